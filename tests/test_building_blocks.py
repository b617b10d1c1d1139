"""Unit tests of the shared semi-supervised mechanics against values computed by hand or independently."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from nnunet_ext.data.transforms import AppendSignedDistanceMaps
from nnunet_ext.losses import mean_squared_error, one_hot_foreground, squared_soft_dice_loss
from nnunet_ext.networks import SemiSupervisedUNet
from nnunet_ext.training.level_sets import level_set_to_probability, signed_distance_map
from nnunet_ext.training.schedules import sigmoid_rampup, training_fraction
from nnunet_ext.training.teacher import EMATeacher
from nnunet_ext.training.uncertainty import (certainty_mask, clamped_gaussian_noise, entropy_threshold,
                                             predictive_entropy, stochastic_teacher_passes)


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0.0) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.5) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(1.0) == 1.0
    assert sigmoid_rampup(2.0) == 1.0
    assert sigmoid_rampup(0.25, rampup_fraction=0.5) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(0.0, rampup_fraction=0.0) == 1.0
    assert training_fraction(250, 4, 250) == 0.25
    assert training_fraction(5000, 4, 250) == 1.0


def test_ema_teacher_parameters_and_buffers():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    teacher_net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    teacher = EMATeacher(teacher_net, student, decay=0.99)
    assert torch.equal(teacher_net[0].weight, student[0].weight)
    assert not any(p.requires_grad for p in teacher_net.parameters())
    assert teacher.alpha(0) == 0.0 and teacher.alpha(1) == 0.5 and teacher.alpha(1000) == 0.99

    with torch.no_grad():
        student[0].weight.add_(1.0)
        student[1].running_mean.fill_(2.0)
        student[1].num_batches_tracked.fill_(7)
    before = teacher_net[0].weight.clone()
    teacher.update(student, step=1)  # alpha = 0.5
    assert torch.allclose(teacher_net[0].weight, 0.5 * before + 0.5 * student[0].weight)
    assert torch.allclose(teacher_net[1].running_mean, torch.full((2,), 1.0))  # 0.5 * 0 + 0.5 * 2
    assert int(teacher_net[1].num_batches_tracked) == 7

    teacher.update(student, step=500)  # alpha = 0.99
    expected = 0.99 * (0.5 * before + 0.5 * student[0].weight) + 0.01 * student[0].weight
    assert torch.allclose(teacher_net[0].weight, expected)


def brute_force_sdf(mask: np.ndarray, spacing) -> np.ndarray:
    coords = np.argwhere(np.ones_like(mask)) * np.asarray(spacing)
    inside, outside = mask.ravel(), ~mask.ravel()
    d_out = np.zeros(mask.size)
    d_in = np.zeros(mask.size)
    d_out[outside] = cdist(coords[outside], coords[inside]).min(1)
    d_in[inside] = cdist(coords[inside], coords[outside]).min(1)
    sdf = d_out / d_out.max() - d_in / d_in.max()
    padded = np.pad(mask, 1, constant_values=True)
    boundary = np.zeros_like(mask)
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            neighbour = np.roll(padded, shift, axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
            boundary |= mask & ~neighbour
    sdf = sdf.reshape(mask.shape)
    sdf[boundary] = 0
    return sdf


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.7, 1.0)])
def test_signed_distance_map_matches_brute_force(spacing):
    rng = np.random.default_rng(1)
    mask = np.zeros((9, 11, 10), dtype=bool)
    mask[2:6, 3:9, 2:7] = True
    mask[6, 5, 5] = True
    mask &= rng.random(mask.shape) > 0.1
    sdf = signed_distance_map(mask, spacing)
    np.testing.assert_allclose(sdf, brute_force_sdf(mask, spacing), atol=1e-6)
    assert sdf[mask].max() <= 0 and sdf[~mask].min() > 0
    assert sdf.min() == pytest.approx(-1) and sdf.max() == pytest.approx(1)


def test_signed_distance_map_degenerate_patches():
    assert np.all(signed_distance_map(np.zeros((4, 5, 6), bool)) == 1)
    assert np.all(signed_distance_map(np.ones((4, 5, 6), bool)) == -1)


def test_append_signed_distance_maps_labels_and_regions():
    seg = torch.zeros((1, 6, 7, 8), dtype=torch.int16)
    seg[0, 1:4, 2:5, 2:6] = 1
    seg[0, 4:6, 1:3, 1:3] = 2
    out = AppendSignedDistanceMaps([1, 2], False, (1.0, 1.0, 1.0))(image=torch.zeros((1, 6, 7, 8)),
                                                                     segmentation=[seg, seg[:, ::2]])
    assert out["image"].shape == (3, 6, 7, 8)
    np.testing.assert_allclose(out["image"][1].numpy(), signed_distance_map(seg[0].numpy() == 1))
    np.testing.assert_allclose(out["image"][2].numpy(), signed_distance_map(seg[0].numpy() == 2))
    regions = torch.stack([seg[0] > 0, seg[0] == 2]).to(torch.int16)
    out = AppendSignedDistanceMaps([], True, None)(image=torch.zeros((1, 6, 7, 8)), segmentation=regions)
    np.testing.assert_allclose(out["image"][1].numpy(), signed_distance_map(seg[0].numpy() > 0))


def test_level_set_to_probability_sign():
    phi = torch.tensor([-0.01, 0.0, 0.01])
    p = level_set_to_probability(phi)
    assert p[0] > 0.99 and p[1] == 0.5 and p[2] < 0.01


def test_mean_squared_error_masked_by_hand():
    a = torch.zeros((1, 2, 2, 2))
    b = torch.ones((1, 2, 2, 2))
    b[:, :, 0, 0] = 3
    mask = torch.zeros((1, 1, 2, 2))
    mask[0, 0, 0, 0] = 1
    mask[0, 0, 1, 1] = 1
    # kept voxels: (0,0) with squared error 9 in both channels, (1,1) with 1 in both channels
    assert mean_squared_error(a, b, mask).item() == pytest.approx((9 + 9 + 1 + 1) / (2 * 2))
    assert mean_squared_error(a, b).item() == pytest.approx((9 * 2 + 1 * 6) / 8)


def test_squared_soft_dice_by_hand():
    probs = torch.tensor([[[0.5, 1.0, 0.0, 0.0]]])
    target = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    expected = 1 - (2 * 1.5 + 1e-5) / (1.25 + 2 + 1e-5)
    assert squared_soft_dice_loss(probs, target).item() == pytest.approx(expected)


def test_one_hot_foreground():
    target = torch.tensor([[[0, 1, 2, 2]]])
    onehot = one_hot_foreground(target, 3, False)
    assert onehot.shape == (1, 2, 4)
    assert onehot[0, 0].tolist() == [0, 1, 0, 0] and onehot[0, 1].tolist() == [0, 0, 1, 1]


def test_uncertainty_entropy_and_threshold():
    mean_probs = torch.tensor([[[0.5], [0.5]], [[1.0], [0.0]]])  # (B=2, C=2, 1 voxel)
    entropy = predictive_entropy(mean_probs, False)
    assert entropy[0, 0, 0].item() == pytest.approx(math.log(2), abs=1e-5)
    assert entropy[1, 0, 0].item() == pytest.approx(0, abs=1e-5)
    assert entropy_threshold(0.0, 2, False) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert entropy_threshold(1.0, 3, False) == pytest.approx(math.log(3))
    passes = torch.stack([mean_probs, mean_probs])
    mask, _ = certainty_mask(passes, 0.5, 2, False)
    assert mask[:, 0, 0].tolist() == [0.0, 1.0]


def test_noise_is_clamped_and_passes_are_batched():
    x = torch.zeros(1000)
    noisy = clamped_gaussian_noise(x, std=1.0, clamp=0.2)
    assert noisy.abs().max() <= 0.2 + 1e-7 and noisy.std() > 0.1
    calls = []

    def teacher(batch):
        calls.append(batch.shape[0])
        return batch[:, :2] * 0

    probs = stochastic_teacher_passes(teacher, torch.zeros((3, 2, 4, 4)), 5, False)
    assert probs.shape == (5, 3, 2, 4, 4) and calls == [3] * 5  # CPU default: one pass per forward
    calls.clear()
    stochastic_teacher_passes(teacher, torch.zeros((3, 2, 4, 4)), 5, False, chunk_size=0)
    assert calls == [15]
    calls.clear()
    stochastic_teacher_passes(teacher, torch.zeros((3, 2, 4, 4)), 5, False, chunk_size=6)
    assert calls == [6, 6, 3]


def tiny_unet():
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    return PlainConvUNet(1, 3, (4, 8, 16), torch.nn.Conv3d, 3, (1, 2, 2), 1, 2, (1, 1), True,
                         torch.nn.InstanceNorm3d, {"affine": True}, None, None, torch.nn.LeakyReLU,
                         {"inplace": True}, deep_supervision=True)


def test_network_wrapper_heads_dropout_and_inference_output():
    torch.manual_seed(0)
    net = SemiSupervisedUNet(tiny_unet(), dropout_p=0.5, num_level_set_channels=2)
    x = torch.randn(2, 1, 8, 8, 8)
    net.train()
    segmentation, level_set = net(x)
    assert isinstance(segmentation, list) and segmentation[0].shape == (2, 2, 8, 8, 8)
    assert level_set.shape == (2, 2, 8, 8, 8) and level_set.abs().max() <= 1
    assert not torch.equal(net(x)[0][0], segmentation[0])  # dropout makes train passes stochastic
    net.eval()
    net.decoder.deep_supervision = False
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 8, 8, 8)
    assert torch.equal(out, net(x))
    assert any(k.startswith("level_set_head") for k in net.state_dict())


def test_paper_step_decay_schedule():
    from nnunet_ext.trainers.paper_schedule import StepDecayLR
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    schedule = StepDecayLR(optimizer, 0.01, iterations_per_epoch=250, step_iterations=2500)
    for epoch, lr in ((0, 0.01), (9, 0.01), (10, 0.001), (19, 0.001), (20, 0.0001), (23, 0.0001)):
        schedule.step(epoch)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)
    constant = StepDecayLR(optimizer, 0.01, 250, 0)
    constant.step(100)
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_compiled_semi_supervised_network_matches_eager_in_train_and_eval_mode():
    """nnU-Net compiles the network on CUDA by default. Compiled with inductor (on the CPU here; random ops fall
    back to eager's generator so dropout draws the same masks), the wrapper with dropout and level-set head gives
    the eager outputs in train and eval mode, and gradients reach the level-set head through the tapped features."""
    import torch._inductor.config as inductor_config
    torch.manual_seed(0)
    eager = SemiSupervisedUNet(tiny_unet(), dropout_p=0.5, num_level_set_channels=2)
    network = SemiSupervisedUNet(tiny_unet(), dropout_p=0.5, num_level_set_channels=2)
    network.load_state_dict(eager.state_dict())
    x = torch.randn(2, 1, 16, 16, 16)
    with inductor_config.patch(fallback_random=True):
        compiled = torch.compile(network, backend="inductor")
        torch.manual_seed(1)
        segmentation, level_set = compiled(x)
        torch.manual_seed(1)
        expected_segmentation, expected_level_set = eager(x)
        for ours, theirs in zip([*segmentation, level_set], [*expected_segmentation, expected_level_set]):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        level_set.square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.level_set_head.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.decoder.stages[-1].parameters())
        network.eval()
        eager.eval()
        network.decoder.deep_supervision = eager.decoder.deep_supervision = False
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-5)
