"""MONAI's 3-D U-Nets (the shape of MLPerf's 3D-UNet / KiTS benchmark), tiny configs with seeded
random weights: ``qx export --model tests/zoo/monai_models.py:monai_unet`` loads them."""

from __future__ import annotations

from architectures import _seeded  # biases drawn too, as every zoo net

VOLUME = 16  # input side: 1 x 1 x 16 x 16 x 16


def monai_unet():
    """Residual units, strided Conv down, ConvTranspose up, InstanceNorm and PReLU (MONAI's defaults)."""
    from monai.networks.nets import UNet

    return _seeded(lambda: UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2),
                                num_res_units=1))


def monai_dynunet():
    """nnU-Net's architecture: InstanceNorm and LeakyReLU, ConvTranspose up."""
    from monai.networks.nets import DynUNet

    return _seeded(lambda: DynUNet(spatial_dims=3, in_channels=1, out_channels=2, kernel_size=[3, 3, 3],
                                   strides=[1, 2, 2], upsample_kernel_size=[2, 2], filters=[4, 8, 16]))


MONAI_ZOO = {"monai_unet": monai_unet, "monai_dynunet": monai_dynunet}
