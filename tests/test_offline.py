"""Tests never touch the network: tests/conftest.py refuses every connection off the loopback, so even a
test that forgot PERCEPTLAB_OFFLINE cannot download (it gets k-means, not torchvision's weights)."""

import socket
import urllib.request

import pytest

from metric.backbones import backbone_spec, imagenet_weights_file, resolve_weights


def test_a_connection_off_the_loopback_is_refused():
    with pytest.raises(OSError, match="tests never touch the network"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: never routed
    with pytest.raises(OSError, match="tests never touch the network"):
        urllib.request.urlopen("http://192.0.2.1/", timeout=1)


def test_the_loopback_still_answers():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with server, socket.create_connection(server.getsockname(), timeout=1):
        pass


def test_auto_without_the_offline_switch_still_downloads_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("PERCEPTLAB_OFFLINE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    used, reason = resolve_weights("alex", "auto")
    assert used == "kmeans" and "could not be fetched" in reason
    assert not imagenet_weights_file(backbone_spec("alex"))[0].exists()
