"""Teacher readout / finalizer against gazecrop.metrics (skipped without torch; no backbone weights needed)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
T = pytest.importorskip("gazecrop.train.teacher")

from gazecrop import datasets as D  # noqa: E402
from gazecrop import metrics as M  # noqa: E402


def test_finalizer_normalised_and_loss_matches_metrics():
    torch.manual_seed(0)
    fin = T.Finalizer(np.random.default_rng(0).normal(size=(T.CB_MAP_SIZE, T.CB_MAP_SIZE)), sigma=0.05)
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        logd = fin(x)
    assert logd.shape == (2, 6, 8)
    np.testing.assert_allclose(torch.logsumexp(logd.flatten(1), 1).numpy(), [0.0, 0.0], atol=1e-5)
    # the training loss (log-likelihood of fixation cells) equals metrics.log_likelihood on the grid
    s = D.Sample("osie", "a.jpg", None, "train", 80, 60, np.array([0.0, 79.0, 40.2]), np.array([0.0, 59.0, 30.7]),
                 np.array(["a", "a", "b"]), np.full(3, np.nan))
    cells = T.fixation_cells(s, (6, 8))
    ll_nats = float(logd[0].flatten()[cells].sum())
    gx, gy = D.scale_fixations(s.x, s.y, (80, 60), (8, 6))
    bits = M.log_likelihood(logd[0].double().numpy(), gx, gy)
    assert bits == pytest.approx((ll_nats / 3 + math.log(48)) / math.log(2), abs=1e-5)


@pytest.mark.parametrize("w,h,expected", [(1024, 768, (512, 384)), (768, 1024, (384, 512)), (256, 256, (512, 512)),
                                          (1024, 683, (512, 352)), (800, 100, (512, 64))], ids=str)
def test_input_size(w, h, expected):
    assert T.input_size(w, h, 512) == expected


def test_blur_preserves_constant_and_mass_centre():
    x = torch.zeros(1, 9, 9)
    x[0, 4, 4] = 1.0
    y = T._gaussian_blur(x, torch.tensor(1.0))
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(int(y[0].argmax()), (9, 9)) == (4, 4)
    c = T._gaussian_blur(torch.full((1, 5, 7), 3.0), torch.tensor(2.0))
    np.testing.assert_allclose(c.numpy(), 3.0, rtol=1e-5)


class _StubBackbone(torch.nn.Module):
    channels = [4, 5, 6]
    strides = [8, 16, 32]


def test_member_uses_only_its_first_features():
    """``MemberSpec.features = K``: the readout reads the first K backbone features, later ones change nothing."""
    torch.manual_seed(0)
    spec = T.MemberSpec("probe", features=2)
    m = T.TeacherMember(spec, backbone=_StubBackbone())
    assert m.readout.channels == [4, 5]
    feats = [torch.randn(1, 4, 6, 8), torch.randn(1, 5, 3, 4), torch.randn(1, 6, 2, 2)]
    with torch.no_grad():
        a = m.forward_features(feats, (6, 8))
        b = m.forward_features(feats[:2] + [torch.randn(1, 6, 2, 2)], (6, 8))
        full = T.TeacherMember(T.MemberSpec("all", features=3), backbone=_StubBackbone())
        c = full.forward_features(feats[:2] + [torch.randn(1, 6, 2, 2)], (6, 8))
        d = full.forward_features(feats, (6, 8))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(c, d)  # the full member does read the third feature
    for bad in (0, 4):
        with pytest.raises(ValueError, match="features"):
            T.TeacherMember(T.MemberSpec("bad", features=bad), backbone=_StubBackbone())
