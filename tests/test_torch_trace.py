"""from_torch on modules with their own forward(): torch.fx traces them into convlens
Functional models (residual additions, concatenations, functional calls, views) that predict
torch's numbers; what convlens can't express names the module's path, its type and why."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.io import from_torch
from convlens.models import Sequential

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional


class LeNet(nn.Module):
    """The PyTorch tutorial's network, as the tutorial writes it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 structure (2 basic blocks per stage), narrower."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], width
        for index, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class VGG(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        layers, cin = [], 3
        for item in (8, "M", 16, "M", 16, 16, "M"):
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, item, 3, padding=1), nn.ReLU(inplace=True)]
                cin = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(16 * 2 * 2, 32), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(32, classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        x = x.view(x.size(0), -1)
        return self.classifier(x)


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        self.bottom = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.merge2 = nn.Conv2d(16, 8, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.merge1 = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        skip1 = self.down1(x)
        skip2 = self.down2(F.max_pool2d(skip1, 2))
        bottom = self.bottom(F.max_pool2d(skip2, 2))
        x = F.relu(self.merge2(torch.cat([self.up2(bottom), skip2], dim=1)))
        x = F.relu(self.merge1(torch.cat((self.up1(x), skip1), 1)))
        return torch.sigmoid(self.head(x))


def random_statistics(module):
    generator = torch.Generator().manual_seed(0)
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            child.running_mean.copy_(torch.rand(child.num_features, generator=generator) - 0.5)
            child.running_var.copy_(torch.rand(child.num_features, generator=generator) + 0.5)
            child.weight.data.copy_(torch.rand(child.num_features, generator=generator) + 0.5)
    return module.eval()


@pytest.mark.parametrize(("make", "shape", "merges"), [
    (LeNet, (1, 28, 28), set()), (ResNet18, (3, 32, 32), {"Add"}), (VGG, (3, 16, 16), set()),
    (UNet, (1, 16, 16), {"Concatenate"}),
])
def test_traced_modules_predict_as_torch(make, shape, merges):
    torch.manual_seed(0)
    module = random_statistics(make())
    model = from_torch(module, shape)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert merges <= kinds
    assert sum(int(np.prod(w.shape)) for w in model.get_weights()) == sum(
        p.numel() for p in module.state_dict().values() if p.dtype.is_floating_point)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_plain_sequentials_still_become_sequential_models():
    model = from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), (1, 5, 5))
    assert isinstance(model, Sequential)


def test_what_convlens_cannot_express_names_the_module_path_type_and_reason():
    net = ResNet18()
    net.layer3[0].downsample[1] = nn.BatchNorm2d(32, track_running_stats=False)
    with pytest.raises(ValueError) as error:
        from_torch(net.eval(), (3, 32, 32))
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    assert "module 'layer3.0.downsample.1' (BatchNorm2d): track_running_stats=False" in message

    class Upsampling(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)
            # corner-aligned bilinear sampling: no Keras UpSampling2D computes it
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)

        def forward(self, x):
            return self.up(self.conv(x))

    with pytest.raises(ValueError, match=r"module 'up' \(Upsample\): mode='bilinear', "
                                         r"align_corners=True"):
        from_torch(Upsampling(), (1, 4, 4))

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            if x.sum() > 0:
                return self.conv(x)
            return x

    with pytest.raises(ValueError, match=r"Branchy.forward\(\) can't be traced by torch.fx"):
        from_torch(Branchy(), (1, 4, 4))

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.conv(x) * 2.0

    with pytest.raises(ValueError, match=r"node 'mul' \(call_function mul\): mul with a constant"):
        from_torch(Scaled(), (1, 4, 4))


class RandomNet(nn.Module):
    """A traceable module of random blocks: plain convs, residual adds, concatenated
    branches, functional pooling and activations, then a flatten and a linear head."""

    def __init__(self, blocks, channels, size):
        super().__init__()
        self.kinds = [kind for kind, _ in blocks]
        self.parts = nn.ModuleList()
        for kind, (kernel, width) in blocks:
            pad = kernel // 2
            if kind == "conv":
                part = nn.Conv2d(channels, width, kernel, padding=pad)
                channels = width
            elif kind == "residual":
                part = nn.Sequential(nn.Conv2d(channels, channels, kernel, padding=pad),
                                     nn.BatchNorm2d(channels))
            elif kind == "branches":
                part = nn.ModuleList([nn.Conv2d(channels, width, 1),
                                      nn.Conv2d(channels, width, kernel, padding=pad)])
                channels = 2 * width
            else:  # "pool"
                part = nn.Identity()
                size //= 2
            self.parts.append(part)
        self.head = nn.Linear(channels * size * size, 3)

    def forward(self, x):
        for kind, part in zip(self.kinds, self.parts):
            if kind == "conv":
                x = F.relu(part(x))
            elif kind == "residual":
                x = torch.tanh(part(x) + x)
            elif kind == "branches":
                x = torch.cat([part[0](x), F.sigmoid(part[1](x))], dim=1)
            else:
                x = F.avg_pool2d(x, 2)
        return self.head(torch.flatten(x, 1))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["conv", "residual", "branches", "pool"]),
                          st.tuples(st.sampled_from([1, 3, 5]), st.integers(1, 4))),
                min_size=1, max_size=5),
       st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_random_traceable_modules_predict_as_torch(blocks, channels, seed):
    pools = sum(kind == "pool" for kind, _ in blocks)
    size = 2 ** min(pools, 3) * 2
    blocks = [block for block in blocks if block[0] != "pool"] + [("pool", (1, 1))] * min(pools, 3)
    torch.manual_seed(seed % 1000)
    module = random_statistics(RandomNet(blocks, channels, size))
    model = from_torch(module, (channels, size, size))
    x = np.random.default_rng(seed).standard_normal((2, channels, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
