"""Augmentation as a function of (seed, epoch, sample index): the counter-based draws, the batch
operations against torchvision's per-image definitions, the named augmentations, and training
batches that are the same in any worker count and batch size."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.transforms import v2

from distill.data import batch_ops as ops
from distill.data.base import DataModule, Splits
from distill.data.sample_draws import SampleDraws, hash32, hash32_int
from distill.data.views import crop_flip, crop_jitter, image, signal
from distill.errors import ConfigError


def lowbias32(x: int) -> int:
    """Wellons' published lowbias32, in plain Python."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) % 2 ** 32
    x ^= x >> 15
    x = (x * 0x846CA68B) % 2 ** 32
    return x ^ (x >> 16)


# -- draws ----------------------------------------------------------------------------------------

def test_the_hash_is_lowbias32_on_tensors_and_ints():
    values = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 987654321]
    expected = [lowbias32(v) for v in values]
    given = torch.tensor(values)
    assert hash32(given).tolist() == expected
    assert given.tolist() == values  # its input left as it was
    assert [hash32_int(v) for v in values] == expected
    many = torch.randint(0, 2 ** 32, (20000,), generator=torch.Generator().manual_seed(0))
    assert hash32(many).tolist() == [lowbias32(v) for v in many.tolist()]  # products wrap right


def test_a_samples_draws_depend_on_its_seed_epoch_index_and_stream_only():
    def draws(seed, epoch, index, stream=0, count=5):
        return SampleDraws(seed, epoch, torch.tensor(index)).uniform(stream, count)

    full = draws(3, 2, [7, 1, 9, 4])
    assert torch.equal(draws(3, 2, [4, 7])[[1, 0]], full[[0, 3]])  # any batch, any order
    assert torch.equal(draws(3, 2, [9]), full[2:3])
    for other in (draws(4, 2, [7, 1, 9, 4]), draws(3, 3, [7, 1, 9, 4]),
                  draws(3, 2, [7, 1, 9, 4], stream=1), draws(3, 2, [8, 2, 10, 5])):
        assert not torch.isclose(other, full).any()
    assert torch.equal(draws(3, 2, [7], count=2), full[:1, :2])  # more numbers extend a row


def test_uniforms_and_normals_have_their_moments():
    u = SampleDraws(0, 0, torch.arange(50_000)).uniform(0, 4)
    assert 0 <= u.min() and u.max() < 1
    assert u.mean().item() == pytest.approx(0.5, abs=0.005)
    assert u.var().item() == pytest.approx(1 / 12, abs=0.002)
    assert abs(torch.corrcoef(u.T)[0, 1].item()) < 0.02  # numbers of a row are not related
    n = SampleDraws(0, 0, torch.arange(20_000)).normal(1, 80)  # > 64: counters as tensors
    assert n.mean().item() == pytest.approx(0, abs=0.01)
    assert n.std().item() == pytest.approx(1, abs=0.01)
    assert (n.abs() > 3).float().mean().item() == pytest.approx(0.0027, abs=0.001)


# -- operations against torchvision ----------------------------------------------------------------

def test_pad_crop_and_mirror_equal_a_crop_of_the_padded_image_by_hand():
    g = torch.Generator().manual_seed(0)
    x, u = torch.rand(16, 3, 9, 7, generator=g), torch.rand(16, 2, generator=g)
    fill, mirror = torch.tensor([-1.0, -2.0, -3.0]), torch.rand(16, generator=g) < 0.5
    out = ops.pad_crop(x, 3, u, fill, mirror)
    for b in range(16):
        padded = fill.view(3, 1, 1).expand(3, 15, 13).clone()
        padded[:, 3:12, 3:10] = x[b]
        dy, dx = int(u[b, 0] * 7), int(u[b, 1] * 7)
        crop = padded[:, dy:dy + 9, dx:dx + 7]
        assert torch.equal(out[b], crop.flip(-1) if mirror[b] else crop)
    assert torch.equal(ops.pad_crop(x, 0, u), x)
    assert torch.equal(ops.pad_crop(x, 0, u, mirror=mirror), ops.flip(x, (~mirror).float()))


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation", "hue"])
def test_colour_operations_equal_torchvisions_per_image(name):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(12, 3, 6, 5, generator=g)
    factors = (torch.rand(12, generator=g) - 0.5 if name == "hue"
               else 2 * torch.rand(12, generator=g))
    theirs = getattr(v2.functional, f"adjust_{name}")
    expected = torch.stack([theirs(x[b], float(factors[b])) for b in range(12)])
    torch.testing.assert_close(getattr(ops, name)(x, factors), expected, atol=3e-6, rtol=0)
    torch.testing.assert_close(ops.grayscale(x), v2.functional.rgb_to_grayscale(x))


def test_resized_crop_boxes_follow_torchvision_and_the_resize_is_its_bilinear_one():
    g = torch.Generator().manual_seed(2)
    x, u = torch.rand(64, 3, 16, 12, generator=g), torch.rand(64, 40, generator=g)
    top, left, height, width = ops.crop_boxes(u, 16, 12, (0.2, 0.6))
    area = (height * width).float() / (16 * 12)
    assert ((area > 0.15) & (area < 0.65)).all()  # the drawn fraction, up to rounding
    assert ((width / height > 3 / 4 - 0.2) & (width / height < 4 / 3 + 0.2)).all()
    assert ((top >= 0) & (top + height <= 16) & (left >= 0) & (left + width <= 12)).all()
    expected = torch.stack([v2.functional.resized_crop(x[b], *(int(v[b]) for v in
                                                              (top, left, height, width)),
                                                       [16, 12], antialias=False)
                            for b in range(64)])
    torch.testing.assert_close(ops.resized_crop(x, u, (0.2, 0.6)), expected, atol=2e-6, rtol=0)
    # no try fits (a whole 16 x 4 image is outside the ratios): the centred fallback box
    boxes = ops.crop_boxes(u, 16, 4, (0.9, 1.0))
    assert [int(v[0]) for v in boxes] == [(16 - round(4 / 0.75)) // 2, 0, round(4 / 0.75), 4]


def test_roll_is_torch_roll_per_sample():
    x = torch.arange(30.0).view(3, 1, 10)
    shift = torch.tensor([2, -3, 0])
    assert torch.equal(ops.roll(x, shift),
                       torch.stack([torch.roll(x[b], int(shift[b]), -1) for b in range(3)]))


# -- the named augmentations ----------------------------------------------------------------------

def batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.expand(n, *x.shape).clone()


def test_signal_shifts_scales_and_adds_noise_of_its_spread():
    x = batch_of(torch.linspace(-1, 1, 40).view(1, 40), 4000)
    draws = SampleDraws(0, 0, torch.arange(4000))
    out = signal(max_shift=3, scale=0.2, noise=0.0)(x, draws, 1)
    u = draws.uniform(1, 2)
    shift = (u[:, 0] * 7).long() - 3
    gain = 1 + 0.2 * (2 * u[:, 1] - 1)
    torch.testing.assert_close(out, ops.roll(x, shift) * gain.view(-1, 1, 1))
    assert set(shift.tolist()) == set(range(-3, 4))
    noisy = signal(max_shift=0, scale=0.0, noise=0.3)(x, draws, 1)
    assert (noisy - x).std().item() == pytest.approx(0.3, rel=0.02)


def test_image_views_flip_half_and_crop_the_drawn_box():
    x = batch_of(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3)), 200)
    draws = SampleDraws(0, 0, torch.arange(200))
    whole = image(crop_scale=(1.0, 1.0), flip=True)(x, draws, 2)
    flipped = [torch.allclose(o, x[0].flip(-1), atol=1e-5) for o in whole]
    assert all(f or torch.allclose(o, x[0], atol=1e-5) for f, o in zip(flipped, whole))
    assert 70 < sum(flipped) < 130
    u = draws.uniform(2, 41)
    torch.testing.assert_close(image(crop_scale=(0.3, 0.5), flip=False)(x, draws, 2),
                               ops.resized_crop(x, u[:, :40], (0.3, 0.5)))
    with pytest.raises(ConfigError, match="crop_scale"):
        image(crop_scale=(0.5, 0.2))


def test_crop_jitter_on_one_channel_images_has_contrast_and_brightness_only():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(16, 1, 8, 8, generator=g)
    draws = SampleDraws(0, 0, torch.arange(16))
    off = dict(padding=0, flip=False, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
               jitter_p=1.0, grayscale_p=1.0)
    for key in ("saturation", "hue"):  # no colour to change; grayscale is the image itself
        assert torch.equal(crop_jitter(**{**off, key: 0.4 if key != "hue" else 0.2})(x, draws, 1),
                           x)
    out = crop_jitter(**{**off, "contrast": 0.5})(x, draws, 1)
    factors = 0.5 + draws.uniform(1, 7)[:, 6]  # 5 + 1 op: its order, then its factor
    expected = torch.stack([v2.functional.adjust_contrast(x[b], float(factors[b]))
                            for b in range(16)])
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("views, message", [
    ("{name: crop_jitter, count: 2, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}",
     "data.views: crop_jitter makes views of shape (3, 8, 8) from inputs of shape (1, 8, 8)"),
    ("{name: crop_jitter, count: 2, padding: -2}", "data.views.padding: padding must be 0 or"),
    ("{name: crop_jitter, count: 2, brightness: -0.4}", "data.views.brightness: brightness must"),
    ("{name: signal, count: 2, noise: -1}", "data.views.noise: noise must be 0 or more"),
])
def test_views_that_cannot_work_on_the_inputs_are_refused_at_validate(tmp_path, capsys, views,
                                                                     message):
    from distill.cli import main

    f = tmp_path / "v.yaml"
    f.write_text(f"name: v\nseeds: [0]\ndata: {{name: digits, batch_size: 64, views: {views}}}\n"
                 f"student: {{net: {{name: mlp, hidden: [16]}}}}\ntrain: {{epochs: 1}}\n"
                 f"objectives: [{{name: ce}}, {{name: supcon}}]\n")
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_crop_jitter_refuses_spreads_out_of_range():
    for key, value in (("hue", 0.6), ("jitter_p", 1.5)):
        with pytest.raises(ConfigError) as error:
            crop_jitter(**{key: value})
        assert error.value.key == f"data.views.{key}"


# -- training batches --------------------------------------------------------------------------------

def augmented_splits(n: int = 40) -> Splits:
    g = torch.Generator().manual_seed(4)
    images = [(torch.rand(3, 8, 8, generator=g), i % 4) for i in range(n)]
    targets = torch.tensor([y for _, y in images])
    return Splits(images, images[:8], targets, targets[:8], 4, (3, 8, 8),
                  augment=crop_flip(2, fill=torch.tensor([-1.0, 0.0, 1.0])))


def training_samples(data: DataModule, epoch: int) -> dict[int, tuple[torch.Tensor, ...]]:
    """Every training sample of an epoch as training reads it, by its index."""
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)
    out = {}
    for batch in loader:
        x, _, index, views = data.training_batch(batch, epoch)
        out.update({int(i): (x[k], views[k]) for k, i in enumerate(index)})
    return out


def test_training_inputs_are_the_same_in_any_worker_count_and_batch_size():
    splits = augmented_splits()
    views = (signal(max_shift=1, scale=0.1, noise=0.1), 2)
    one = training_samples(DataModule(splits, batch_size=8, seed=5, views=views), epoch=3)
    two = training_samples(DataModule(splits, batch_size=6, num_workers=2, seed=5, views=views),
                           epoch=3)
    assert one.keys() == two.keys() == set(range(40))
    for i in one:
        assert torch.equal(one[i][0], two[i][0]) and torch.equal(one[i][1], two[i][1])
    assert not torch.equal(one[0][1][0], one[0][1][1])  # two different views
    later = training_samples(DataModule(splits, batch_size=8, seed=5, views=views), epoch=4)
    other_seed = training_samples(DataModule(splits, batch_size=8, seed=6, views=views), epoch=3)
    for changed in (later, other_seed):
        assert sum(torch.equal(one[i][0], changed[i][0]) for i in one) < 20


def test_validation_batches_and_the_train_set_read_in_order_are_not_augmented():
    splits = augmented_splits()
    data = DataModule(splits, batch_size=8, seed=5)
    x, _, index = next(iter(data.train_eval_dataloader()))
    assert torch.equal(x, torch.stack([splits.train[int(i)][0] for i in index]))

    progress = SimpleNamespace(current=SimpleNamespace(processed=2))
    data.trainer = SimpleNamespace(training=False,
                                   fit_loop=SimpleNamespace(epoch_progress=progress))
    loader = data.train_dataloader()
    batch = next(iter(loader))  # in the order of the trainer's epoch, 2, not the sampler's 0
    order = torch.randperm(40, generator=torch.Generator().manual_seed(5 * 100_003 + 2))
    assert batch[2].tolist() == order[:8].tolist()
    assert data.on_after_batch_transfer(batch, 0) is batch  # validation
    data.trainer.training = True
    augmented = data.on_after_batch_transfer(batch, 0)
    assert torch.equal(augmented[0], data.training_batch(batch, 2)[0])
    assert not torch.equal(augmented[0], data.training_batch(batch, 0)[0])
    assert not torch.equal(augmented[0], batch[0])
    assert math.isclose(float(augmented[0].mean()), float(batch[0].mean()), abs_tol=0.2)


# -- the loader's batched fetch -------------------------------------------------------------------

def test_a_batch_fetched_at_once_equals_the_items_one_by_one(tmp_path):
    from torch.utils.data import TensorDataset, default_collate

    from distill.data.base import Indexed
    from distill.data.vision import ArrayImages

    g = torch.Generator().manual_seed(6)
    images = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8, generator=g)
    targets = torch.randint(0, 5, (30,), generator=g)
    keys = [(2, 7), (2, 0), (2, 13), (2, 7)]
    for data in (ArrayImages(images, targets, (0.5, 0.4, 0.3), (0.2, 0.3, 0.4)),
                 TensorDataset(images.float(), targets), list(zip(images.float(), targets))):
        for indices in (None, torch.arange(29, -1, -1)):
            indexed = Indexed(data, indices)
            at_once = indexed.__getitems__(keys)
            one_by_one = default_collate([indexed[key] for key in keys])
            assert isinstance(at_once, tuple) and len(at_once) == len(one_by_one) == 3
            assert all(torch.equal(a, b) and a.dtype == b.dtype
                       for a, b in zip(at_once, one_by_one))
            expected = [k for _, k in keys] if indices is None else [29 - k for _, k in keys]
            assert at_once[2].tolist() == expected


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loaders_give_whole_batches_as_the_items_collated(workers):
    from torch.utils.data import TensorDataset, default_collate

    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(21, 3, generator=g), torch.randint(0, 4, (21,), generator=g)
    for train in (TensorDataset(x, y), list(zip(x, y))):
        data = DataModule(Splits(train, train, y, y, 4, (3,)), batch_size=8, eval_batch_size=8,
                          num_workers=workers, seed=3)
        for loader in (data.train_dataloader(), data.val_dataloader()):
            batches = list(loader)
            assert [len(b[2]) for b in batches] == [8, 8, 5]
            for xb, yb, ib in batches:
                expected = default_collate([(x[i], y[i], int(i)) for i in ib])
                assert all(torch.equal(a, b) and a.dtype == b.dtype
                           for a, b in zip((xb, yb, ib), expected))
