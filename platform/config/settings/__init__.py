"""Settings per environment: base (shared), local (embedded defaults), test, production."""
