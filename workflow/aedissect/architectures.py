"""The layers of an architecture entry, dense or convolutional, and the shape of every cut they make (torch-free).

A hidden layer of ``encoder`` or ``decoder`` is a dense width (an int) or a convolution, a mapping
``{conv: channels, kernel: k, stride: s, padding: p}`` in the encoder and ``{deconv: channels, ...}`` (a transposed
convolution) in the decoder; ``padding`` defaults to (k - s) // 2, which halves the grid at kernel 4, stride 2.
The encoder's convolutions come first and its dense layers after them (the map is flattened between); the code is
always a dense layer. The decoder's dense layers come first, its deconvolutions after them: the last dense layer's
output is unflattened to (width / (h w), h, w), the grid (h, w) that the deconvolutions need to give the image's,
and the output layer is then one more deconvolution to the image's channels with the last one's kernel, stride and
padding (disentanglement_lib's conv decoder: dense, dense to a map, deconvolutions).
"""

from __future__ import annotations

from collections.abc import Sequence

Layer = int | dict


class ArchitectureError(ValueError):
    """An architecture whose layers do not fit together or do not fit the data's images: names the layer."""


def is_conv(layer: Layer) -> bool:
    return isinstance(layer, dict)


def has_conv(run: dict) -> bool:
    """Whether a run's (or an architecture entry's) layers hold a convolution."""
    return any(is_conv(layer) for layer in [*run["encoder"], *run["decoder"]])


def dense_architectures(study: dict) -> dict[str, dict]:
    """The study's architectures without convolutions: those the bench's dense ensembles measure."""
    return {name: arch for name, arch in study["architectures"].items() if not has_conv(arch)}


def conv_parts(layer: dict) -> tuple[str, int, int, int, int]:
    """(conv or deconv, channels, kernel, stride, padding)."""
    op = "conv" if "conv" in layer else "deconv"
    kernel, stride = layer["kernel"], layer["stride"]
    return op, layer[op], kernel, stride, layer.get("padding", (kernel - stride) // 2)


def label(layer: Layer) -> str:
    """A layer in a table's encoder/decoder column: 64 (dense), c32k4s2 (conv), t32k4s2 (deconv); p<padding> when
    it is not the default."""
    if not is_conv(layer):
        return str(layer)
    op, channels, kernel, stride, padding = conv_parts(layer)
    text = f"{'c' if op == 'conv' else 't'}{channels}k{kernel}s{stride}"
    return text + (f"p{padding}" if padding != (kernel - stride) // 2 else "")


def labels(layers: Sequence[Layer]) -> str:
    return "-".join(label(layer) for layer in layers) or "none"


def image_channels_first(image_shape: Sequence[int]) -> tuple[int, ...]:
    """A data set's image shape as (C, H, W): a grey image's (H, W) gets one channel; () stays () (not an image)."""
    shape = tuple(image_shape)
    return (1, *shape) if len(shape) == 2 else shape


def _conv_grid(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _deconv_input_grid(size: int, kernel: int, stride: int, padding: int) -> int | None:
    """The grid a transposed convolution needs to give ``size``: out = (in - 1) s - 2 p + k; None where none does."""
    span = size + 2 * padding - kernel
    return span // stride + 1 if span >= 0 and span % stride == 0 else None


def cut_shapes(
    encoder: Sequence[Layer], bottleneck: int, decoder: Sequence[Layer], input_shape: Sequence[int], where: str
) -> list[tuple[int, ...]]:
    """The shape of one sample at every cut, input to output (a dense cut (width,), a conv cut (C, H, W)), the
    input in ``input_shape`` ((C, H, W) for a net with convolutions, (in_dim,) otherwise). Raises
    ``ArchitectureError`` naming ``where`` (the config key) and the layer for a layer order the module docstring
    does not allow, a grid a convolution cannot give, or a dense layer that cannot be unflattened to the grid."""
    shapes: list[tuple[int, ...]] = [tuple(input_shape)]
    in_dim = 1
    for n in input_shape:
        in_dim *= n
    for i, layer in enumerate(encoder):
        if is_conv(layer):
            if "conv" not in layer:
                raise ArchitectureError(f"{where}.encoder[{i}]: an encoder layer is a width or {{conv: ...}}")
            if len(shapes[-1]) != 3:
                raise ArchitectureError(
                    f"{where}.encoder[{i}]: a convolution needs an image (C, H, W) before it, not {shapes[-1]} "
                    "(the encoder's convolutions come first, on a data set with images)"
                )
            _, channels, kernel, stride, padding = conv_parts(layer)
            grid = [_conv_grid(n, kernel, stride, padding) for n in shapes[-1][1:]]
            if min(grid) < 1:
                raise ArchitectureError(f"{where}.encoder[{i}]: {label(layer)} on a {shapes[-1][1:]} grid gives none")
            shapes.append((channels, *grid))
        else:
            shapes.append((layer,))
    shapes.append((bottleneck,))
    deconvs = [i for i, layer in enumerate(decoder) if is_conv(layer)]
    dense = [i for i, layer in enumerate(decoder) if not is_conv(layer)]
    if not deconvs:
        return shapes + [(width,) for width in decoder] + [(in_dim,)]
    if any("deconv" not in decoder[i] for i in deconvs):
        raise ArchitectureError(f"{where}.decoder: a decoder layer is a width or {{deconv: ...}}")
    if not dense or max(dense) > min(deconvs):
        raise ArchitectureError(
            f"{where}.decoder: its deconvolutions need dense layers before them and none after (the last dense "
            "layer is unflattened to their first map)"
        )
    if len(input_shape) != 3:
        raise ArchitectureError(f"{where}.decoder: deconvolutions need a data set with images, not {input_shape}")
    # from the image back to the grid of the first deconvolution's input
    _, _, kernel, stride, padding = conv_parts(decoder[-1])
    maps: list[tuple[int, ...]] = [tuple(input_shape)]
    for i in reversed(deconvs):
        layer = decoder[i]
        grid = [_deconv_input_grid(n, kernel, stride, padding) for n in maps[0][1:]]
        if None in grid:
            raise ArchitectureError(
                f"{where}.decoder[{i}]: no grid gives {maps[0][1:]} through kernel {kernel}, stride {stride}, "
                f"padding {padding}"
            )
        maps.insert(0, (conv_parts(layer)[1], *grid))
        _, _, kernel, stride, padding = conv_parts(layer)
    grid = [_deconv_input_grid(n, kernel, stride, padding) for n in maps[0][1:]]
    width = decoder[dense[-1]]
    area = grid[0] * grid[1] if None not in grid else 0
    if not area or width % area:
        raise ArchitectureError(
            f"{where}.decoder[{dense[-1]}]: a dense layer of width {width} cannot be unflattened to a "
            f"{'x'.join(map(str, grid))} map for {label(decoder[deconvs[0]])} (its width must be channels x "
            f"{'x'.join(map(str, grid))})"
        )
    # the last dense layer emits the first deconvolution's input map (its cut, flattened, is the same numbers)
    flat = [(width,) for width in decoder[: len(dense) - 1]]
    return shapes + flat + [(width // area, *grid)] + maps


def flat_width(shape: Sequence[int]) -> int:
    width = 1
    for n in shape:
        width *= n
    return width


def layer_kinds(encoder: Sequence[Layer], decoder: Sequence[Layer]) -> list[Layer]:
    """Every layer of the net, input to output, as its entry: the code layer and a dense output layer as None, a
    deconvolution output layer as the decoder's last deconvolution (whose kernel, stride and padding it takes)."""
    output = decoder[-1] if decoder and is_conv(decoder[-1]) else None
    return [*encoder, None, *decoder, output]


def layer_macs(encoder: Sequence[Layer], decoder: Sequence[Layer], shapes: list[tuple[int, ...]]) -> list[int]:
    """Multiply-adds of one sample through each layer (weights only): a dense layer in x out; a convolution its
    output positions x in x out channels x kernel area; a deconvolution its input positions x the same (each input
    position scatters one kernel)."""
    macs = []
    for i, layer in enumerate(layer_kinds(encoder, decoder)):
        before, after = shapes[i], shapes[i + 1]
        if layer is None or not is_conv(layer):
            macs.append(flat_width(before) * flat_width(after))
            continue
        _, _, kernel, _, _ = conv_parts(layer)
        positions = flat_width(after[1:]) if "conv" in layer else flat_width(before[1:])
        macs.append(positions * before[0] * after[0] * kernel * kernel)
    return macs
