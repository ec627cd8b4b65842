import pytest
import torch

from semiseg.models import UNet2D


def test_unet_shapes_and_size():
    model = UNet2D(1, 4)
    n = sum(p.numel() for p in model.parameters())
    # The papers' UNet has ~1.8 M parameters; MONAI's blocks keep conv biases before batch norm: ~1.94 M.
    assert 1.7e6 < n < 2.1e6
    x = torch.randn(2, 1, 64, 48)
    feats = model.encode(x)
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128, 256]
    assert feats[-1].shape[-2:] == (4, 3)
    logits, dec = model.decode(feats, return_features=True)
    assert logits.shape == (2, 4, 64, 48) and dec.shape == (2, 16, 64, 48)
    model.eval()
    assert torch.allclose(model(x), model.decode(model.encode(x)))


def test_unet_encoder_dropout_is_per_level():
    model = UNet2D(1, 2)
    encoder = [model.inc, *model.downs]
    per_level = [{m.p for m in block.modules() if isinstance(m, torch.nn.Dropout)} for block in encoder]
    assert per_level == [{0.05}, {0.1}, {0.2}, {0.3}, {0.5}]
    assert {m.p for m in model.ups.modules() if isinstance(m, torch.nn.Dropout)} <= {0.0}
    # one dropout per encoder block, between its two convolutions (SSL4MIS), not after both
    assert all(sum(isinstance(m, torch.nn.Dropout) for m in block.modules()) == 1 for block in encoder)


def test_unet_rejects_bad_config():
    with pytest.raises(ValueError):
        UNet2D(1, 1)
    with pytest.raises(ValueError):
        UNet2D(1, 3, features=(8, 16))
