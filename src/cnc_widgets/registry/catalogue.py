"""The catalogue: provenance records and the live models of a registry.

Adding and compressing models (with the checks on names, parents and reruns), reading
them back, and rebuilding a model that is not in the session by replaying its recorded
operation on its parent (what each operation needs comes from the compression catalogue).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from torch import nn

from ..compress import apply_operation, operation_record, operations
from ..compress.catalogue import plain_params
from ..compress.gguf import declare_gguf_info
from ..evaluate.behaviour import callable_digest
from ..evaluate.fingerprint import model_fingerprint
from ..evaluate.model_io import call_model, eval_mode, prepare_inputs
from ..evaluate.sizes import size_report
from ..provenance import ModelRecord, check_parent, jsonable_params
from .naming import default_name

# Columns that describe provenance; every other metrics column is a measurement.
PROVENANCE_COLUMNS = ["parent", "operation", "operation_params"]
OPERATION_DIGEST = "operation_digest"


class Catalogue:
    """Records and models of :class:`~.facade.ModelRegistry` (a mixin: state lives there)."""

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    @property
    def names(self) -> list[str]:
        """Model names in the order they were added."""
        return list(self._records)

    def record(self, name: str) -> ModelRecord:
        """The provenance record of ``name``."""
        self._require(name)
        return self._records[name]

    def model(self, name: str) -> nn.Module:
        """The ``nn.Module`` registered as ``name``.

        Raises
        ------
        KeyError
            If the registry holds no weights for it (metric-only models, or a store
            reopened without the models).
        """
        self._require(name)
        if name not in self._models:
            self._materialise(name)
        return self._models[name]

    def load(self, name: str, skeleton: nn.Module | None = None) -> nn.Module:
        """Bring ``name``'s weights into this session after reopening a store.

        With ``skeleton`` (a module of the same architecture) the weights saved with
        ``keep_weights=True`` are loaded into it; without, the model is rebuilt by
        replaying its operation on its parent. Either way the result must match the
        stored fingerprint.
        """
        self._require(name)
        if name in self._models:
            return self._models[name]
        record = self._records[name]
        if skeleton is not None:
            try:
                found = self._store is not None and self._store.load_weights(
                    record.fingerprint, skeleton
                )
            except RuntimeError as exc:
                raise ValueError(
                    f"the saved weights of {name!r} do not fit the given skeleton "
                    f"({type(skeleton).__name__}): {str(exc)[:300]}; pass a module built like "
                    "the one that was added"
                ) from None
            if not found:
                raise KeyError(f"the store holds no saved weights of {name!r} (keep_weights=False)")
            self._check_skeleton_dtypes(name, skeleton)
            self._attach(name, skeleton)
            return skeleton
        self._materialise(name)
        return self._models[name]

    def _check_skeleton_dtypes(self, name: str, skeleton: nn.Module) -> None:
        """Loading casts saved tensors to the skeleton's dtypes: say so instead of reporting
        changed weights (a half model's weights loaded into a float32 skeleton)."""
        from safetensors import safe_open

        path = self._store.weights_path(self._records[name].fingerprint)
        with safe_open(str(path), framework="pt") as fh:
            saved = {k: fh.get_slice(k).get_dtype() for k in fh.keys()}
        have = skeleton.state_dict()
        wrong = sorted(
            {
                (str(have[k].dtype).removeprefix("torch."), dtype)
                for k, dtype in saved.items()
                if k in have
                and have[k].is_floating_point()
                and dtype in _FLOAT_NAMES.values()
                and _FLOAT_NAMES.get(str(have[k].dtype)) != dtype
            }
        )
        if wrong:
            saved_names = {v: k.removeprefix("torch.") for k, v in _FLOAT_NAMES.items()}
            pairs = ", ".join(
                f"{a} tensors where the saved ones are {saved_names[b]}" for a, b in wrong
            )
            raise ValueError(
                f"the skeleton given for {name!r} holds {pairs}; build it in the saved "
                f"precision first (e.g. cnc_widgets.compress.precision.half(skeleton) for a "
                f"'half' model), or call reg.load({name!r}) without a skeleton to rebuild it "
                "from its parent"
            )

    def _attach(self, name: str, model: nn.Module) -> None:
        found = model_fingerprint(model)
        if found != self._records[name].fingerprint:
            raise ValueError(
                f"the weights rebuilt for {name!r} differ from the ones it was evaluated with; "
                f"add it again with reg.add({name!r}, model, replace=True)"
            )
        self._models[name] = model

    def _materialise(self, name: str) -> None:
        record = self._records[name]
        if (
            record.fingerprint is None
            or record.parent is None
            or record.operation not in operations()
        ):
            raise KeyError(
                f"model {name!r} has no weights in this session (metric-only, reopened from a "
                f"store, or made by a custom function); add it with reg.add({name!r}, model) "
                "or load(name, skeleton) its saved weights"
            )
        if record.parent not in self._models:
            self._materialise(record.parent)
        source = None
        # An operation that copies from a source (restore) takes the grandparent: what the
        # catalogue declares, not a name checked here.
        if "source" in operations()[record.operation]["needs"]:
            grandparent = self._records[record.parent].parent
            if grandparent is not None and grandparent not in self._models:
                self._materialise(grandparent)
            source = self._models.get(grandparent) if grandparent else None
        parent = self._models[record.parent]
        example = None
        if self._data is not None and self._data.inputs is not None:
            example = self._data.batch(0, min(len(self._data), self._data.batch_size))
        known = operations()[record.operation]["params"]
        params = {k: v for k, v in record.params.items() if k in known}
        with eval_mode(parent, inference=None):
            child = apply_operation(
                parent, record.operation, source=source, example_input=example, **params
            )
        _copy_modes(parent, child)
        self._attach(name, child)

    def _require(self, name: str) -> None:
        if name not in self._records:
            raise KeyError(f"no model named {name!r} (known: {sorted(self._records)})")

    def add(
        self,
        name: str,
        model: nn.Module,
        *,
        parent: str | None = None,
        operation: str | None = None,
        params: dict[str, Any] | None = None,
        replace: bool = False,
        info: dict[str, Any] | None = None,
    ) -> str:
        """Register ``model`` as ``name``, made from ``parent`` by ``operation``.

        Adding the same name with the same weights and provenance again (a re-run
        notebook cell) does nothing. The same name with other weights or other
        provenance raises, unless ``replace=True``, which also drops the model's
        cached results. ``info={"gguf_file": path}`` says that ``model`` was loaded from
        that GGUF file (``from_pretrained(..., gguf_file=...)``): its ``size_bytes`` is then
        the file's quantized tensor data (:func:`cnc_widgets.compress.gguf.declare_gguf_file`).

        Returns
        -------
        str
            ``name``.

        Raises
        ------
        ValueError
            For a model that is not an ``nn.Module``, an unknown parent, a parent
            that would close a cycle, or a reused name. The registry is unchanged.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"model name must be a non-empty string, got {name!r}")
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model {name!r} is a {type(model).__name__}, not a torch.nn.Module; "
                "pass the module itself (for a pipeline, its .model)"
            )
        if operation is not None and not isinstance(operation, str):
            raise ValueError(f"operation of model {name!r} must be a string label")
        check_parent(self._records, name, parent)
        info = declare_gguf_info(model, info)  # {"gguf_file": path}: sized as the file
        record = ModelRecord(
            name=name,
            parent=parent,
            operation=operation,
            params=jsonable_params(name, params),
            fingerprint=model_fingerprint(model),
            info=dict(info or {}),
        )
        old = self._records.get(name)
        if old is not None:
            same_op = old.info.get(OPERATION_DIGEST) == record.info.get(OPERATION_DIGEST)
            if old.fingerprint == record.fingerprint and old.same_provenance(record) and same_op:
                self._models.setdefault(name, model)
                return name
            if not replace:
                what = "weights" if old.fingerprint != record.fingerprint else "provenance"
                raise ValueError(
                    f"a model named {name!r} already exists with different {what}; "
                    f"pass replace=True to overwrite it (its cached results are dropped) "
                    f"or choose another name"
                )
            self._drop_results(name)
        if self._store is not None and self.keep_weights:
            record.info["weights_saved"] = self._store.put_weights(record.fingerprint, model)
        self._records[name] = record
        self._models[name] = model
        self._static.pop(name, None)
        if self._store is not None:
            self._store.put_record(record)
        self._touch()
        return name

    def compress(
        self,
        parent: str,
        operation: str | Callable[..., nn.Module],
        *,
        name: str | None = None,
        **params: Any,
    ) -> str:
        """Make a compressed child of ``parent`` and register it with its provenance.

        The parent is never modified. The child records the operation (a built-in name
        from :func:`cnc_widgets.compress`, or a callable's qualified name), every
        parameter including defaults, library versions and the seconds it took.

        Examples
        --------
        >>> reg.compress("base", "prune", amount=0.5)
        'base-prune-0.5'
        >>> reg.compress("base", "quantize_dynamic", name="int8")
        'int8'
        """
        source = self.model(parent)
        params = plain_params(params)
        # A batch given here stands in for the evaluation data (prune_structured before
        # set_data); it is context, not a parameter, so it is neither recorded nor named.
        given_example = params.pop("example_input", None)
        builtin = operations().get(operation) if isinstance(operation, str) else None
        if builtin is not None:
            resolved = {k: v for k, v in builtin["params"].items() if v != "<required>"}
            resolved.update(params)
        else:
            resolved = dict(params)
        grandparent = self._records[parent].parent
        restore_from = None
        if builtin is not None and "source" in builtin["needs"]:
            if grandparent is None or grandparent not in self._models:
                raise ValueError(
                    f"{operation} copies tensors back from the parent of {parent!r}, which has "
                    f"none with weights in this session; {operation} from a model that has a "
                    "parent"
                )
            restore_from = self._models[grandparent]
        example = given_example
        if example is None and self._data is not None and self._data.inputs is not None:
            example = self._data.batch(0, min(len(self._data), self._data.batch_size))
        start = time.perf_counter()
        # Built-in operations run their passes (tracing, calibration) in eval mode, so a
        # parent left in train mode gives a child with its BatchNorm statistics; a callable
        # gets the copy as it is (it may fine-tune).
        report: dict[str, Any] = {}
        keep = contextlib.nullcontext() if builtin is None else eval_mode(source, inference=None)
        with keep:
            child = apply_operation(
                source,
                operation,
                source=restore_from,
                example_input=example,
                report=report,
                **params,
            )
        if builtin is not None:
            _copy_modes(source, child)
        elapsed = time.perf_counter() - start
        record = operation_record(operation, resolved)
        self._check_runs(child, parent, record["operation"])
        if name is None:
            name = self._free_name(
                default_name(parent, record["operation"], params), child, parent, record
            )
        # "given": the parameters the user wrote, which the views show on the edge.
        info = {
            "versions": record["versions"],
            "elapsed_s": elapsed,
            "callable": record["callable"],
            "given": sorted(params),
            # What the operation did: renamed modules (module_map), pruned widths, ranks.
            **json.loads(json.dumps(report, default=str)),
            # Why the child has its size: what changed, what was left, bytes by dtype.
            "sizes": size_report(source, child),
        }
        if builtin is None:
            # What the callable computes, with its parameters: behaviour the weights and
            # attributes may not show (a private attribute, a patched method) still gets
            # its own results.
            spec = json.dumps(record["params"], sort_keys=True, default=str)
            info[OPERATION_DIGEST] = hashlib.sha256(
                f"{callable_digest(operation)}|{spec}".encode()
            ).hexdigest()
        return self.add(
            name,
            child,
            parent=parent,
            operation=record["operation"],
            params=record["params"],
            info=info,
        )

    def _check_runs(self, child: nn.Module, parent: str, operation: str) -> None:
        """Refuse a child that cannot run on two rows of the evaluation data, so that
        compress() and not evaluate() reports it (skipped before set_data)."""
        if self._data is None or self._data.inputs is None:
            return
        batch = self._data.batch(0, min(2, len(self._data)))
        try:
            with eval_mode(child):
                # The task reads the output (a language model's logits are 3-D).
                ready, task = prepare_inputs(child, batch), self.task
                task.batch_outputs(task.run(child, ready, call_model), ready)
        except Exception as exc:
            raise ValueError(
                f"{operation} of {parent!r} made a model that fails on the evaluation data "
                f"({type(exc).__name__}: {str(exc)[:300]}); it was not added. The error names "
                "what failed: try other parameters or another operation"
            ) from exc

    def _free_name(self, base: str, child: nn.Module, parent: str, record: dict[str, Any]) -> str:
        """``base``, or ``base-2``, ``base-3``... when another variant already holds it."""
        name, i = base, 1
        while name in self._records:
            old = self._records[name]
            same = (
                old.parent == parent
                and old.operation == record["operation"]
                and old.params == jsonable_params(name, record["params"])
                and old.fingerprint == model_fingerprint(child)
            )
            if same:
                return name  # a re-run cell: add() makes it a no-op
            i += 1
            name = f"{base}-{i}"
        return name

    def provenance(self) -> pd.DataFrame:
        """One row per model: parent, operation and its parameters."""
        rows = [
            {
                "name": r.name,
                "parent": r.parent,
                "operation": r.operation,
                "operation_params": r.params,
            }
            for r in self._records.values()
        ]
        return pd.DataFrame(rows, columns=["name", *PROVENANCE_COLUMNS]).set_index("name")


def _copy_modes(parent: nn.Module, child: nn.Module) -> None:
    """Give the child's modules the train/eval mode of the parent's module of that name."""
    modes = {name: m.training for name, m in parent.named_modules()}
    for name, m in child.named_modules():
        if name in modes:
            m.training = modes[name]


_FLOAT_NAMES = {  # torch dtype -> safetensors dtype name
    "torch.float32": "F32",
    "torch.float16": "F16",
    "torch.bfloat16": "BF16",
    "torch.float64": "F64",
}
