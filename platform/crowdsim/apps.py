from django.apps import AppConfig


class CrowdsimConfig(AppConfig):
    name = "crowdsim"
    verbose_name = "Simulated crowd"
