"""ipywidgets forms for the notebooks, built from the catalog; each reads back into a typed value or spec.

Every widget is usable without touching it: its defaults give a valid headless run (nbval, ``make demo``).
Besides the live widget, each one offers a static HTML table of its current values (``text/html``), which is
what an exported notebook shows where no widget JavaScript runs (``make demo``'s HTML, GitHub).

    picker = NodeTypePicker(pb.node_types())   # then: picker.node_type
    form = ServingForm(pb.serving_defaults())  # then: form.spec()  (InvalidSpecError says what to fix)
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from .catalog import get_model, list_models
from .errors import InvalidSpecError, PlaybookError
from .names import validate_name

_WIDE = w.Layout(width="520px")
_STYLE = {"description_width": "170px"}
PREFERRED_NODE = "PNV5b.8XLARGE96"


def _field(kind, description: str, **kwargs):
    return kind(description=description, style=_STYLE, layout=_WIDE, **kwargs)


def _message(text: str, ok: bool) -> str:
    colour = "#1a7f37" if ok else "#cf222e"
    return f'<div style="color:{colour};max-width:700px">{html.escape(text)}</div>'


class _Form(w.VBox):
    """A VBox that also renders as a static table of its values (``_values()``) and has a one-line repr."""

    def _values(self) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def _safe_values(self) -> list[tuple[str, Any]]:
        try:
            return self._values()
        except PlaybookError as exc:
            return [("invalid", str(exc))]
        except AttributeError:  # asked before __init__ finished
            return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self._safe_values()) + ")"

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        rows = "".join(f'<tr><th style="text-align:left;padding-right:14px">{html.escape(str(k))}</th>'
                       f'<td style="text-align:left">{html.escape(str(v))}</td></tr>' for k, v in self._safe_values())
        bundle["text/html"] = (f'<table class="tke-playbook-form" title="{type(self).__name__} (static copy of the '
                               f'widget)">{rows}</table>')
        return bundle


def _node_label(node) -> str:
    gpu = f"{node.gpu_count} × {node.gpu.name}" if getattr(node, "gpu", None) else "no GPU"
    return f"{node.name} ({gpu}, {node.cpu:g} vCPU, {node.memory_gib:.0f} GiB)"


class NodeTypePicker(_Form):
    """Pick the GPU node type to serve on, from the cluster's nodes or the catalog. ``.node_type`` reads it."""

    def __init__(self, node_types: Sequence[Any], default: str | None = None, gpu_only: bool = True):
        nodes = [n for n in node_types if not gpu_only or getattr(n, "gpu", None)] or list(node_types)
        if not nodes:
            raise InvalidSpecError("No node types to choose from: add a GPU node pool to the cluster (preflight "
                                   "shows what is missing)", field="node_types", value=[])
        names = [n.name for n in nodes]
        chosen = default if default in names else (PREFERRED_NODE if PREFERRED_NODE in names else names[0])
        self._nodes = dict(zip(names, nodes))
        self.dropdown = _field(w.Dropdown, "GPU node type", options=[(_node_label(n), n.name) for n in nodes],
                               value=chosen)
        super().__init__([self.dropdown])

    @property
    def node_type(self):
        return self._nodes[self.dropdown.value]

    def _values(self):
        return [("GPU node type", _node_label(self.node_type))]


class PvcPicker(_Form):
    """Pick an existing PVC or type a new name (the tutorial's is ``ai-model``). ``.pvc_name`` reads it."""

    def __init__(self, pvcs: Sequence[str] = (), default: str = "ai-model"):
        options = sorted(set(pvcs) | {default})
        self.combo = _field(w.Combobox, "PVC", options=options, value=default, ensure_option=False,
                            placeholder="ai-model")
        self.message = w.HTML()
        self.combo.observe(lambda _: self._check(), names="value")
        super().__init__([self.combo, self.message])
        self._check()

    def _check(self) -> None:
        try:
            validate_name(self.combo.value, "PVC name")
            self.message.value = ""
        except InvalidSpecError as exc:
            self.message.value = _message(str(exc), False)

    @property
    def pvc_name(self) -> str:
        return validate_name(self.combo.value.strip(), "PVC name")

    def _values(self):
        return [("PVC", self.combo.value)]


class ModelPicker(_Form):
    """Pick a catalog model; the GPU fit verdict for ``node_type`` updates as you choose. ``.model`` reads it."""

    def __init__(self, default: str, node_type: Any = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None, tensor_parallel: int | None = None):
        self.node_type = node_type
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel = tensor_parallel
        self.dropdown = _field(w.Dropdown, "Model", value=get_model(default).hf_id,
                               options=[(f"{m.hf_id} ({m.params / 1e9:.2f}B, dim {m.dim})", m.hf_id)
                                        for m in list_models()])
        self.verdict_html = w.HTML()
        self.dropdown.observe(lambda _: self._update(), names="value")
        super().__init__([self.dropdown, self.verdict_html])
        self._update()

    @property
    def model(self) -> str:
        return self.dropdown.value

    @property
    def verdict(self):
        """The :class:`~tke_playbook.fit.FitVerdict` for the chosen model on the node type (None without one)."""
        if self.node_type is None or getattr(self.node_type, "gpu", 1) is None:
            return None
        from .fit import check_fit

        info = get_model(self.model)
        length = min(self.max_model_len or info.recommended_max_tokens or info.max_tokens, info.max_tokens)
        return check_fit(info, self.node_type, max_model_len=length, gpu_memory_utilization=self.gpu_memory_utilization,
                         tensor_parallel=self.tensor_parallel)

    def _update(self) -> None:
        try:
            verdict = self.verdict
        except PlaybookError as exc:
            self.verdict_html.value = _message(str(exc), False)
            return
        if verdict is None:
            self.verdict_html.value = _message("No GPU node type chosen: the fit check is skipped.", True)
        else:
            self.verdict_html.value = _message(f"{verdict.summary()} {verdict.recommendation}", verdict.fits)

    def _verdict_text(self) -> str:
        try:
            verdict = self.verdict
        except PlaybookError as exc:
            return str(exc)
        return "no GPU node type chosen" if verdict is None else f"{verdict.summary()} {verdict.recommendation}"

    def _values(self):
        return [("Model", self.model), ("GPU fit", self._verdict_text())]


class DownloadForm(_Form):
    """Model (with fit verdict), source hub, completions and parallelism. ``.spec()`` builds the DownloadSpec."""

    def __init__(self, defaults: Any, node_type: Any = None):
        from .download import Source

        self.defaults = defaults
        self.picker = ModelPicker(defaults.model, node_type)
        self.source = _field(w.Dropdown, "Source", options=[s.value for s in Source],
                             value=Source(defaults.source).value)
        self.completions = _field(w.BoundedIntText, "Completions (shards)", min=1, max=64,
                                  value=defaults.completions)
        self.parallelism = _field(w.BoundedIntText, "Parallelism (pods at once)", min=1, max=64,
                                  value=defaults.parallelism)
        self.message = w.HTML()
        for widget in (self.source, self.completions, self.parallelism, self.picker.dropdown):
            widget.observe(lambda _: self._check(), names="value")
        super().__init__([self.picker, self.source, self.completions, self.parallelism, self.message])
        self._check()

    def _check(self) -> None:
        try:
            self.spec()
            self.problem = ""
            self.message.value = ""
        except PlaybookError as exc:
            self.problem = str(exc)
            self.message.value = _message(self.problem, False)

    def spec(self):
        """The DownloadSpec the form describes (the revision and repository follow a change of hub or model)."""
        return self.defaults.replace(model=self.picker.model, source=self.source.value,
                                     completions=self.completions.value, parallelism=self.parallelism.value)

    def _values(self):
        return self.picker._values() + [("Source", self.source.value), ("Completions (shards)", self.completions.value),
                                        ("Parallelism (pods at once)", self.parallelism.value),
                                        ("check", self.problem or "valid")]


class ServingForm(_Form):
    """The chart's main values, prefilled from a spec (the seed profile). ``.spec()`` builds the ServingSpec.
    With a ``node_type`` the GPU fit verdict follows the model, max_model_len, memory share and tpSize."""

    def __init__(self, defaults: Any, pvcs: Sequence[str] = (), node_type: Any = None):
        from .serving import ServiceType

        self.defaults = defaults
        self.model = ModelPicker(defaults.model, node_type, defaults.max_model_len,
                                 defaults.gpu_memory_utilization, defaults.tp_size)
        if node_type is None:
            self.model.verdict_html.layout.display = "none"
        self.pvc = PvcPicker(pvcs, defaults.pvc_name)
        self.max_model_len = _field(w.BoundedIntText, "max_model_len", min=1, max=1 << 20,
                                    value=defaults.max_model_len)
        self.max_batch_size = _field(w.BoundedIntText, "maxBatchSize (max-num-seqs)", min=1, max=4096,
                                     value=defaults.max_batch_size)
        self.gpu_memory_utilization = _field(w.BoundedFloatText, "gpu_memory_utilization", min=0.05, max=1.0,
                                             step=0.01, value=defaults.gpu_memory_utilization)
        self.tp_size = _field(w.BoundedIntText, "tpSize (GPUs per pod)", min=1, max=16, value=defaults.tp_size)
        self.replicas = _field(w.BoundedIntText, "replicas", min=1, max=64, value=defaults.replicas)
        self.service_type = _field(w.Dropdown, "Service type", options=[t.value for t in ServiceType],
                                   value=defaults.service_type.value)
        self.service_port = _field(w.BoundedIntText, "Service port", min=1, max=65535, value=defaults.service_port)
        self.api_key_required = w.Checkbox(description="Require an API key (kept in a Secret)",
                                           value=defaults.api_key_required, indent=False)
        self.message = w.HTML()
        self._inputs = (self.model.dropdown, self.pvc.combo, self.max_model_len, self.max_batch_size,
                        self.gpu_memory_utilization, self.tp_size, self.replicas, self.service_type,
                        self.service_port, self.api_key_required)
        for widget in self._inputs:
            widget.observe(lambda _: self._check(), names="value")
        super().__init__([self.model, self.pvc, self.max_model_len, self.max_batch_size, self.gpu_memory_utilization,
                          self.tp_size, self.replicas, self.service_type, self.service_port, self.api_key_required,
                          self.message])
        self._check()

    def _check(self) -> None:
        if self.model.node_type is not None:  # the verdict follows the numbers that change GPU memory
            self.model.max_model_len = self.max_model_len.value
            self.model.gpu_memory_utilization = self.gpu_memory_utilization.value
            self.model.tensor_parallel = self.tp_size.value
            self.model._update()
        try:
            self.spec()
            self.problem = ""
            self.message.value = _message("Valid.", True)
        except PlaybookError as exc:
            self.problem = str(exc)
            self.message.value = _message(self.problem, False)

    def spec(self):
        """The ServingSpec the form describes (raises InvalidSpecError with what to fix)."""
        tp = self.tp_size.value
        return self.defaults.replace(
            model=self.model.model, pvc_name=self.pvc.pvc_name, max_model_len=self.max_model_len.value,
            max_batch_size=self.max_batch_size.value, gpu_memory_utilization=self.gpu_memory_utilization.value,
            tp_size=tp, gpu_count=max(1, tp * self.defaults.pp_size // self.defaults.lws_group_size),
            replicas=self.replicas.value, service_type=self.service_type.value, service_port=self.service_port.value,
            api_key_required=self.api_key_required.value)

    def _values(self):
        fit = [("GPU fit", self.model._verdict_text())] if self.model.node_type is not None else []
        return [(widget.description, widget.value) for widget in self._inputs] + fit + [
            ("check", self.problem or "valid")]


class TextForm(_Form):
    """A sentence to send, prefilled (the tutorial's by default). ``.text`` reads it (never empty)."""

    def __init__(self, description: str, default: str):
        if not default or not default.strip():
            raise InvalidSpecError("The default text is empty: pass a sentence", field="text", value=default)
        self.default = default
        self.area = w.Textarea(value=default, description=description, style=_STYLE,
                               layout=w.Layout(width="620px", height="70px"))
        super().__init__([self.area])

    @property
    def text(self) -> str:
        return self.area.value.strip() or self.default

    def _values(self):
        return [(self.area.description, self.text)]
