"""Post-training int8 quantisation of an exported model, for Paddle Inference's oneDNN int8 kernels.

``save_int8_program`` writes a layer the way ``paddle.jit.save`` does, but quantised: the layer is
traced to a classic (ProgramDesc) program, its bias adds are put in the form oneDNN fuses into the
convolutions (``fold_bias_reshapes``), Paddle's ``PostTrainingQuantization`` runs it on
calibration batches to find the range of every convolution's and fully connected layer's input
(per-channel ranges for the weights), and the result is saved with those scales. A Predictor with
oneDNN int8 enabled (``inference.ExportedPredictor``) folds them into int8 convolutions.

Paddle 3 traces to its new IR (PIR) by default, which post-training quantisation does not read, so
both steps run under Paddle's old-IR guards; Paddle 2.6 has only the classic IR.
"""

import contextlib
import tempfile
from pathlib import Path

from .runtime import import_paddle, quiet_stderr

paddle = import_paddle()

# Paddle's "KL" is not offered: far slower than "hist", and no more accurate (benchmarks/NOTES.md, section 18).
ALGORITHMS = ("hist", "abs_max", "avg", "mse")
DEFAULT_ALGORITHM = "hist"
QUANTIZED_OPS = ["conv2d", "depthwise_conv2d", "matmul_v2", "mul"]


def _old_ir_guard(name):
    """Paddle 3's guard ``name`` from ``paddle.pir_utils``; nothing to guard on Paddle 2.6."""
    guard = getattr(getattr(paddle, "pir_utils", None), name, None)
    return guard() if guard is not None else contextlib.nullcontext()


def _tensor_rank(variable):
    """The rank of a tensor variable in a ProgramDesc (its type is ``dense_tensor`` in Paddle 3, ``lod_tensor`` in 2.6)."""
    kind = "dense_tensor" if "dense_tensor" in variable.type.DESCRIPTOR.fields_by_name else "lod_tensor"
    return len(getattr(variable.type, kind).tensor.dims)


def fold_bias_reshapes(program_file):
    """Rewrite a classic program's ``reshape2(bias) -> elementwise_add(axis=-1)`` as ``elementwise_add(bias, axis=1)``.

    Paddle 3 traces ``nn.Conv2D``'s bias add to the classic IR with the bias reshaped to
    ``[1, C, 1, 1]``, which hides it from oneDNN's conv + bias (and so conv + bias + ReLU) fusion;
    added along axis 1, the 1-D bias is the pattern that fusion expects. The result is the same
    arithmetic. Returns how many reshapes were folded (0 for a program traced by Paddle 2.6).
    """
    from paddle.base.proto import framework_pb2  # Paddle 2.6 and 3.x

    program_file = Path(program_file)
    desc = framework_pb2.ProgramDesc()
    desc.ParseFromString(program_file.read_bytes())
    block = desc.blocks[0]
    variables = {variable.name: variable for variable in block.vars}
    uses = {}
    for op in block.ops:
        for slot in op.inputs:
            for name in slot.arguments:
                uses[name] = uses.get(name, 0) + 1
    bias_reshapes = {}  # output name -> (reshape op, 1-D persistable input)
    for op in block.ops:
        if op.type != "reshape2":
            continue
        source = next(slot.arguments[0] for slot in op.inputs if slot.parameter == "X")
        output = next(slot.arguments[0] for slot in op.outputs if slot.parameter == "Out")
        variable = variables.get(source)
        if variable is not None and variable.persistable and _tensor_rank(variable) == 1 and uses.get(output) == 1:
            bias_reshapes[output] = (op, source)
    folded = []
    for op in block.ops:
        if op.type != "elementwise_add":
            continue
        for slot in op.inputs:
            if slot.parameter == "Y" and len(slot.arguments) == 1 and slot.arguments[0] in bias_reshapes:
                reshape, source = bias_reshapes[slot.arguments[0]]
                slot.arguments[0] = source
                for attribute in op.attrs:
                    if attribute.name == "axis":
                        attribute.i = 1
                folded.append(reshape)
    if not folded:
        return 0
    dropped = {name for op in folded for slot in op.outputs for name in slot.arguments}
    kept_ops = [op for op in block.ops if not any(op is reshape for reshape in folded)]
    kept_vars = [variable for variable in block.vars if variable.name not in dropped]
    del block.ops[:]
    block.ops.extend(kept_ops)
    del block.vars[:]
    block.vars.extend(kept_vars)
    program_file.write_bytes(desc.SerializeToString())
    return len(folded)


class _CalibrationBatches(paddle.io.DataLoader):
    """The calibration batches as the quantiser reads them: ``loader()`` yields ``{input name: batch}``.

    A ``DataLoader`` by type only, because Paddle 2.6's quantiser accepts nothing else; no loading
    machinery is needed for arrays already in memory, so the base class is not initialised.
    """

    def __init__(self, batches, input_name):  # pylint: disable=super-init-not-called
        self.batches, self.input_name = batches, input_name

    def __call__(self):
        return ({self.input_name: batch} for batch in self.batches)

    def __len__(self):
        return len(self.batches)


def save_int8_program(layer, input_spec, path_prefix, batches, algorithm=DEFAULT_ALGORITHM):
    """Quantise ``layer`` (in eval mode) with ``batches`` and save it as ``path_prefix.pdmodel``/``.pdiparams``.

    ``batches`` is a list of float32 arrays for the one input ``input_spec``; ``algorithm`` is how
    each activation's range is chosen from them (one of ``ALGORITHMS``: the 99.999th percentile of
    a histogram of its absolute values, the largest absolute value seen, the average of the per-batch
    largest values, or the range that minimises the mean squared quantisation error).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if not batches:
        raise ValueError("quantisation needs at least one calibration batch")
    from paddle.static.quantization import PostTrainingQuantization

    path_prefix = Path(path_prefix)
    with tempfile.TemporaryDirectory(prefix="fp32-", dir=path_prefix.parent) as fp32_dir:
        with _old_ir_guard("DygraphOldIrGuard"):
            paddle.jit.save(layer, str(Path(fp32_dir) / "model"), input_spec=[input_spec])
        fold_bias_reshapes(Path(fp32_dir) / "model.pdmodel")
        scope = paddle.static.Scope()
        with _old_ir_guard("OldIrGuard"), paddle.static.scope_guard(scope), quiet_stderr():
            paddle.enable_static()
            try:
                quantizer = PostTrainingQuantization(
                    executor=paddle.static.Executor(paddle.CPUPlace()),
                    model_dir=fp32_dir, model_filename="model.pdmodel", params_filename="model.pdiparams",
                    data_loader=_CalibrationBatches(batches, input_spec.name),
                    batch_size=len(batches[0]), batch_nums=len(batches), algo=algorithm,
                    quantizable_op_type=QUANTIZED_OPS, onnx_format=False, scope=scope,
                )
                quantizer.quantize()
                quantizer.save_quantized_model(str(path_prefix.parent), model_filename=path_prefix.name + ".pdmodel",
                                               params_filename=path_prefix.name + ".pdiparams")
            finally:
                paddle.disable_static()
