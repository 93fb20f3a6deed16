"""Cross-level loss terms against hand-computed values (offline, CPU, random VGG weights)."""

from __future__ import annotations

import math

import pytest
import torch

from formnet_cli.errors import FormnetError
from formnet_cli.training.discriminator import AdversarialLoss, PatchDiscriminator
from formnet_cli.training.losses import (
    CrossLevelLoss,
    PerceptualLoss,
    PixelLoss,
    SobelGradientLoss,
    sobel_responses,
)
from formnet_cli.training.vgg import VGG16_FILENAME, VGG16Features, VGGWeightsError, load_vgg16_relu2_2

# ---------------------------------------------------------------- pixel

# output - target = [0.5, -1, 2, 0] in a 2x2 image
OUTPUT = torch.tensor([[[[1.5, 0.0], [2.0, 0.25]]]])
TARGET = torch.tensor([[[[1.0, 1.0], [0.0, 0.25]]]])
EPS = 0.5  # a large Charbonnier eps so that it visibly matters
ELEMENTWISE = {
    "l2": [0.25, 1.0, 4.0, 0.0],
    "l1": [0.5, 1.0, 2.0, 0.0],
    "charbonnier": [math.sqrt(0.25 + 0.25), math.sqrt(1 + 0.25), math.sqrt(4 + 0.25), 0.5],
}


@pytest.mark.parametrize("kind", ["l2", "l1", "charbonnier"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss_weight", [1.0, 2.5])
def test_pixel_loss_known_values(kind, reduction, loss_weight):
    loss = PixelLoss(kind, loss_weight=loss_weight, reduction=reduction, eps=EPS)(OUTPUT, TARGET)
    values = torch.tensor(ELEMENTWISE[kind]).view(1, 1, 2, 2)
    expected = {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]
    assert loss.shape == expected.shape
    torch.testing.assert_close(loss, loss_weight * expected)


def test_pixel_loss_l2_matches_paper_mse_and_rejects_bad_options():
    assert float(PixelLoss()(OUTPUT, TARGET)) == pytest.approx(5.25 / 4)
    with pytest.raises(ValueError):
        PixelLoss("l3")
    with pytest.raises(ValueError):
        PixelLoss(reduction="avg")
    with pytest.raises(ValueError):
        PixelLoss()(OUTPUT, TARGET[..., :1])


# ---------------------------------------------------------------- Sobel gradient


def ramp(slope: float, height: int = 5, width: int = 6, channels: int = 2, batch: int = 2) -> torch.Tensor:
    """x[b, c, i, j] = slope * j (+ a per-channel offset, which Sobel ignores)."""
    columns = slope * torch.arange(width, dtype=torch.float32)
    offsets = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1) * 0.1
    return columns.view(1, 1, 1, width).expand(batch, channels, height, width) + offsets


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sobel_of_constant_image_is_exactly_zero(reduction):
    constant = torch.full((2, 3, 7, 5), 0.37)
    gx, gy = sobel_responses(constant)
    assert torch.count_nonzero(gx) == 0 and torch.count_nonzero(gy) == 0
    loss = SobelGradientLoss(reduction=reduction)(constant, torch.full_like(constant, 0.9))
    assert torch.count_nonzero(loss) == 0


def test_sobel_responses_of_ramps():
    a = 0.05
    image = ramp(a)
    gx, gy = SobelGradientLoss().sobel_responses(image)
    # interior columns: (1 + 2 + 1) * (x[j+1] - x[j-1]) = 4 * 2a = 8a;
    # border columns with replicate padding: 4 * a
    torch.testing.assert_close(gx[..., 1:-1], torch.full_like(gx[..., 1:-1], 8 * a))
    torch.testing.assert_close(gx[..., [0, -1]], torch.full_like(gx[..., [0, -1]], 4 * a))
    assert torch.count_nonzero(gy) == 0
    # a vertical ramp is the transpose: Gy = 8a inside, Gx = 0
    gx_t, gy_t = sobel_responses(image.transpose(-1, -2))
    torch.testing.assert_close(gy_t[..., 1:-1, :], torch.full_like(gy_t[..., 1:-1, :], 8 * a))
    assert torch.count_nonzero(gx_t) == 0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sobel_loss_between_two_ramps(reduction):
    a, b, weight = 0.05, 0.2, 3.0
    batch, channels, height, width = 2, 2, 5, 6
    loss = SobelGradientLoss(loss_weight=weight, reduction=reduction)(
        ramp(a, height, width, channels, batch), ramp(b, height, width, channels, batch)
    )
    # per pixel: (|dGx| + |dGy|) / 2 = |8a - 8b| / 2 inside, |4a - 4b| / 2 on the two border columns
    row = torch.tensor([4 * abs(a - b)] + [8 * abs(a - b)] * (width - 2) + [4 * abs(a - b)]) / 2
    expected_map = weight * row.expand(batch, channels, height, width)
    n_pixels = batch * channels * height
    expected = {
        "mean": torch.tensor(weight * (8 * (width - 2) + 8) * abs(a - b) / 2 / width),
        "sum": torch.tensor(weight * n_pixels * (8 * (width - 2) + 8) * abs(a - b) / 2),
        "none": expected_map,
    }[reduction]
    torch.testing.assert_close(loss, expected)
    if reduction == "mean":
        assert float(loss) == pytest.approx(3.0 * (8 * 4 + 8) * 0.15 / 2 / 6)  # = 1.5


def test_sobel_responses_equal_grouped_convolution_with_the_kernels():
    loss = SobelGradientLoss()
    image = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1), mode="replicate")
    for response, kernel in zip(loss.sobel_responses(image), (loss.kernel_x, loss.kernel_y)):
        expected = torch.nn.functional.conv2d(padded, kernel.expand(3, 1, 3, 3), groups=3)
        torch.testing.assert_close(response, expected)
    assert loss.kernel_x[0, 0].tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def test_sobel_kernels_are_fixed_buffers_outside_the_state_dict():
    loss = SobelGradientLoss()
    assert loss.state_dict() == {} and list(loss.parameters()) == []
    assert not loss.kernel_x.requires_grad and not loss.kernel_y.requires_grad
    torch.testing.assert_close(loss.kernel_y[0, 0], loss.kernel_x[0, 0].t())
    output = torch.rand(1, 1, 8, 8, requires_grad=True)
    loss(output, torch.rand(1, 1, 8, 8)).backward()
    assert output.grad is not None and torch.isfinite(output.grad).all()


# ---------------------------------------------------------------- perceptual


@pytest.fixture(scope="module")
def random_vgg() -> VGG16Features:
    torch.manual_seed(0)
    return VGG16Features()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("criterion", ["l2", "l1"])
def test_perceptual_loss_zero_for_identical_and_positive_otherwise(random_vgg, channels, criterion):
    loss = PerceptualLoss(feature_extractor=random_vgg, criterion=criterion)
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(2, channels, 16, 16, generator=generator)
    assert float(loss(image, image.clone())) == 0.0
    other = (image + 0.1 * torch.rand(image.shape, generator=generator)).clamp(0, 1)
    assert float(loss(other, image)) > 0


def test_perceptual_features_shape_normalisation_and_reductions(random_vgg):
    loss = PerceptualLoss(feature_extractor=random_vgg, reduction="none", loss_weight=2.0)
    gray = torch.rand(2, 1, 16, 12)
    assert loss.features(gray).shape == (2, 128, 8, 6)
    # gray is replicated to three channels
    torch.testing.assert_close(loss.features(gray), loss.features(gray.expand(-1, 3, -1, -1)))
    # ImageNet normalisation: an image equal to the mean normalises to zero
    mean_image = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    torch.testing.assert_close(loss.normalise(mean_image), torch.zeros(1, 3, 4, 4))
    other = gray.flip(-1)
    elementwise = loss(other, gray)
    assert elementwise.shape == (2, 128, 8, 6)
    mean = PerceptualLoss(feature_extractor=random_vgg, reduction="mean", loss_weight=2.0)(other, gray)
    total = PerceptualLoss(feature_extractor=random_vgg, reduction="sum", loss_weight=2.0)(other, gray)
    torch.testing.assert_close(mean, elementwise.mean())
    torch.testing.assert_close(total, elementwise.sum())
    with pytest.raises(ValueError):
        loss(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))


def test_perceptual_loss_trains_the_output_not_the_vgg(random_vgg):
    loss = PerceptualLoss(feature_extractor=random_vgg)
    loss.train()
    assert not loss.feature_extractor.training
    assert all(not p.requires_grad for p in loss.parameters())
    output = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss(output, torch.rand(1, 3, 8, 8)).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert all(p.grad is None for p in random_vgg.parameters())


def torchvision_style_file(path, vgg: VGG16Features):
    state = {f"features.{key}": value for key, value in vgg.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(4, 4)  # the rest of torchvision's file is ignored
    torch.save(state, path)
    return path


def test_load_vgg16_from_torchvision_format_file(tmp_path, random_vgg):
    path = torchvision_style_file(tmp_path / "vgg.pth", random_vgg)
    loaded = load_vgg16_relu2_2(str(path))
    assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())
    assert list(loaded.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias",
                                         "5.weight", "5.bias", "7.weight", "7.bias"]
    image = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(loaded(image), random_vgg(image), rtol=0, atol=0)
    # the perceptual loss loads the same file
    loss = PerceptualLoss(weights_path=str(path))
    torch.testing.assert_close(loss.feature_extractor(image), random_vgg(image), rtol=0, atol=0)


def test_load_vgg16_from_torch_hub_cache(tmp_path, monkeypatch, random_vgg):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torchvision_style_file(tmp_path / "checkpoints" / VGG16_FILENAME, random_vgg)
    image = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(load_vgg16_relu2_2(None)(image), random_vgg(image), rtol=0, atol=0)


def test_missing_vgg_weights_is_a_one_line_formnet_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for make in (lambda: load_vgg16_relu2_2(None), lambda: PerceptualLoss(weights_path=str(tmp_path / "no.pth"))):
        with pytest.raises(FormnetError) as error:
            make()
        message = str(error.value)
        assert "\n" not in message
        assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
        assert str(tmp_path / "hub" / "checkpoints" / VGG16_FILENAME) in message


class NotATensor:
    pass


def test_vgg_file_is_never_fully_unpickled_and_wrong_files_are_refused(tmp_path):
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"features.0.weight": NotATensor()}, unsafe)
    with pytest.raises(VGGWeightsError):
        load_vgg16_relu2_2(str(unsafe))
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(VGGWeightsError, match="missing"):
        load_vgg16_relu2_2(str(wrong))


# ---------------------------------------------------------------- adversarial


@pytest.mark.parametrize("is_discriminator", [True, False])
def test_lsgan_prediction_equal_to_label_gives_zero(is_discriminator):
    loss = AdversarialLoss("lsgan", loss_weight=0.1)
    assert float(loss(torch.ones(2, 1, 6, 6), True, is_discriminator)) == 0.0
    assert float(loss(torch.zeros(2, 1, 6, 6), False, is_discriminator)) == 0.0
    # MSE against the label: (0.5 - 1)^2 = 0.25, weighted for the generator only
    expected = 0.25 if is_discriminator else 0.025
    assert float(loss(torch.full((1, 1, 2, 2), 0.5), True, is_discriminator)) == pytest.approx(expected)


def test_vanilla_gan_is_bce_with_logits():
    loss = AdversarialLoss("vanilla")
    assert float(loss(torch.full((1, 1, 4, 4), 30.0), True, True)) == pytest.approx(0.0, abs=1e-9)
    assert float(loss(torch.full((1, 1, 4, 4), -30.0), False, True)) == pytest.approx(0.0, abs=1e-9)
    assert float(loss(torch.zeros(1, 1, 4, 4), True, True)) == pytest.approx(math.log(2))
    # confident and wrong: softplus(10) ~ 10
    assert float(loss(torch.full((1, 1, 1, 1), 10.0), False, True)) == pytest.approx(10 + math.log1p(math.exp(-10)))


def test_hinge_known_values_and_weight_only_for_generator():
    prediction = torch.tensor([-2.0, 0.5, 1.5, 2.0]).view(1, 1, 2, 2)
    loss = AdversarialLoss("hinge", loss_weight=2.0)
    # real: relu(1 - D) = [3, 0.5, 0, 0]; fake: relu(1 + D) = [0, 1.5, 2.5, 3]
    assert float(loss(prediction, True, True)) == pytest.approx(0.875)
    assert float(loss(prediction, False, True)) == pytest.approx(1.75)
    # generator: -mean(D) = -0.5, times loss_weight 2
    assert float(loss(prediction, True, False)) == pytest.approx(-1.0)


def test_adversarial_loss_rejects_unknown_type():
    with pytest.raises(ValueError):
        AdversarialLoss("wgan")


@pytest.mark.parametrize(
    "in_channels,base_channels,spectral_norm,norm",
    [(3, 64, False, None), (1, 16, True, None), (3, 16, False, "instance")],
)
def test_patch_discriminator_output_shape_and_gradient(in_channels, base_channels, spectral_norm, norm):
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(in_channels, base_channels, spectral_norm=spectral_norm, norm=norm)
    image = torch.rand(2, in_channels, 64, 64, requires_grad=True)
    logits = discriminator(image)
    assert logits.shape == (2, 1, 6, 6)  # 64 -> 32 -> 16 -> 8 -> 7 -> 6
    AdversarialLoss("hinge")(logits, True, False).backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()


def test_alternating_steps_train_discriminator_and_generator_separately():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(1, base_channels=8, n_layers=2)
    gan = AdversarialLoss("lsgan", loss_weight=0.5)
    real, fake = torch.rand(2, 1, 32, 32), torch.zeros(2, 1, 32, 32, requires_grad=True)
    # discriminator step: fake detached, unweighted loss; only the discriminator gets gradients
    d_loss = gan(discriminator(real), True, True) + gan(discriminator(fake.detach()), False, True)
    d_loss.backward()
    assert fake.grad is None
    assert all(p.grad is not None for p in discriminator.parameters())
    discriminator.zero_grad(set_to_none=True)
    # generator step: the gradient reaches the generator output
    gan(discriminator(fake), True, False).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


# ---------------------------------------------------------------- cross-level


def test_cross_level_loss_sums_named_terms_and_reports_each(random_vgg):
    terms = {
        "pixel": PixelLoss("l2", loss_weight=1.0),
        "gradient": SobelGradientLoss(loss_weight=0.5),
        "perceptual": PerceptualLoss(loss_weight=0.01, feature_extractor=random_vgg),
    }
    loss = CrossLevelLoss(terms)
    output = torch.rand(2, 1, 16, 16, requires_grad=True)
    target = torch.rand(2, 1, 16, 16)
    total, values = loss(output, target)
    assert list(values) == ["pixel", "gradient", "perceptual"]
    assert all(isinstance(v, float) for v in values.values())
    for name, term in terms.items():
        with torch.no_grad():
            assert values[name] == pytest.approx(float(term(output, target)))
    assert float(total.detach()) == pytest.approx(sum(values.values()))
    total.backward()
    assert output.grad is not None


def test_cross_level_loss_known_value_and_invalid_terms():
    total, values = CrossLevelLoss({"pixel": PixelLoss(), "gradient": SobelGradientLoss(0.5)})(
        torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    )
    assert float(total) == 1.0 and values == {"pixel": 1.0, "gradient": 0.0}
    with pytest.raises(ValueError):
        CrossLevelLoss({})
    with pytest.raises(ValueError):
        CrossLevelLoss({"pixel": PixelLoss(reduction="none")})
