"""SongUNet presets shared by benches/songunet.py and benches/sample.py (as `cedm bench edm` /
`cedm bench sample` define them in src/bench.rs)."""

PRESETS = {
    "cifar": dict(img_resolution=32, in_channels=3, model_channels=128, channel_mult=[2, 2, 2], num_blocks=4,
                  attn_resolutions=[16]),
    "ffhq64": dict(img_resolution=64, in_channels=3, model_channels=128, channel_mult=[1, 2, 2, 2], num_blocks=4,
                   attn_resolutions=[16]),
    "quickstart": dict(img_resolution=16, in_channels=1, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                       attn_resolutions=[]),
    "small": dict(img_resolution=32, in_channels=3, model_channels=32, channel_mult=[1, 2, 2], num_blocks=1,
                  attn_resolutions=[8]),
}
