"""Pure image operations on float32 H x W x 3 arrays in [0, 1]. No randomness: every random
realisation (noise, warp fields) is rebuilt from an integer seed passed in as a parameter."""
