"""The paper's "CNN" distortion family: outputs of small, randomly drawn image autoencoders (torch).

- ``space``: the architecture/training space and its seeded sampler;
- ``model``: the generator (encoder-decoder with optional skips) and a small discriminator;
- ``trainer``: training with snapshots, exact resume after a crash, and pools of models;
- ``distortion``: the registered ``cnn_autoencoder`` distortion.
"""
