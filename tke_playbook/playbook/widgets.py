"""ipywidgets forms for the notebooks, built from the catalog; each reads back into a typed value or spec.

Every widget is usable without touching it: its defaults give a valid headless run (nbval, ``make demo``).
Besides the live widget, each one offers a static HTML table of its current values (``text/html``), which is
what an exported notebook shows where no widget JavaScript runs (``make demo``'s HTML, GitHub).

    picker = NodeTypePicker(pb.node_types())   # then: picker.node_type
    form = ServingForm(pb.serving_defaults())  # then: form.spec()  (InvalidSpecError says what to fix)
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ipywidgets as w
import yaml

from ..download import Source
from ..errors import InvalidSpecError, PlaybookError
from ..manifests.storage import build_storage_class
from ..specs.catalog import get_model, list_models
from ..specs.fit import check_fit
from ..specs.names import validate_name
from ..specs.serving import ServiceType
from ..specs.storage import DEFAULT_PVC
from .base import PREFERRED_NODE, default_max_model_len

# Widths in CSS pixels, from JupyterLab's 13 px UI font: about 7.5 px per Latin character (wider glyphs such as
# "W" are rare in our labels), plus room for the dropdown arrow. Labels and values are never cut off ("…").
CHAR_PX = 7.5
LABEL_PX = 220  # the longest label, "maxBatchSize (max-num-seqs)", needs ~203 px
MIN_VALUE_PX = 300
ARROW_PX = 40
_STYLE = {"description_width": f"{LABEL_PX}px"}


def text_px(text: str) -> int:
    """About how wide ``text`` renders in the widget font (CJK characters count double)."""
    return int(sum(2 * CHAR_PX if ord(ch) > 0x2E80 else CHAR_PX for ch in str(text)))


def _value_px(options: Sequence[Any]) -> int:
    labels = [o[0] if isinstance(o, tuple) else o for o in options]
    return max([MIN_VALUE_PX] + [text_px(label) + ARROW_PX for label in labels])


def _field(kind, description: str, **kwargs):
    """A labelled input whose label and longest option show in full."""
    if text_px(description) > LABEL_PX:
        raise InvalidSpecError(f"Widget label {description!r} is wider than {LABEL_PX} px: shorten it",
                               field="description", value=description)
    width = LABEL_PX + _value_px(kwargs.get("options", ()))
    return kind(description=description, style=_STYLE, layout=w.Layout(width=f"{width}px"), **kwargs)


def _message(text: str, ok: bool) -> str:
    colour = "#1a7f37" if ok else "#cf222e"
    return f'<div style="color:{colour};max-width:700px">{html.escape(text)}</div>'


class _Form(w.VBox):
    """A VBox that also renders as a static table of its values (:meth:`rows`) and has a one-line repr."""

    def rows(self) -> list[tuple[str, Any]]:
        """The form's current values as (label, value) pairs: what its static table and repr show."""
        raise NotImplementedError

    def _safe_values(self) -> list[tuple[str, Any]]:
        try:
            return self.rows()
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


def verdict_text(verdict) -> str:
    """The fit verdict in two sentences that do not repeat each other: what the model needs (the summary without
    its headroom, which the recommendation states), then the recommendation."""
    needs = re.sub(r",? headroom -?[0-9.]+ GiB\.?$", ".", verdict.summary())
    return f"{needs} {verdict.recommendation}".strip()


def node_label(node) -> str:
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
        self.dropdown = _field(w.Dropdown, "GPU node type", options=[(node_label(n), n.name) for n in nodes],
                               value=chosen)
        super().__init__([self.dropdown])

    @property
    def node_type(self):
        return self._nodes[self.dropdown.value]

    def rows(self):
        return [("GPU node type", node_label(self.node_type))]


class PvcPicker(_Form):
    """Pick an existing PVC or type a new name (the tutorial's is ``ai-model``). ``.pvc_name`` reads it."""

    def __init__(self, pvcs: Sequence[str] = (), default: str = DEFAULT_PVC):
        options = sorted(set(pvcs) | {default})
        self.combo = _field(w.Combobox, "PVC", options=options, value=default, ensure_option=False,
                            placeholder=DEFAULT_PVC)
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

    def rows(self):
        return [("PVC", self.combo.value)]


# What the StorageClass preview shows for a VPC, subnet or zone not given yet, and the valid stand-ins it is built
# with (replaced in the YAML by the placeholders).
PLACEHOLDERS = {"vpc_id": "<vpc-… of the GPU node>", "subnet_id": "<subnet-… in that VPC and zone>",
                "zone": "<zone of the GPU node, e.g. ap-guangzhou-3>"}
STAND_INS = {"vpc_id": "vpc-0placeholder0", "subnet_id": "subnet-0placeholder0", "zone": "ap-placeholder-9"}


class StorageForm(_Form):
    """The PVC and, for a StorageClass of type CFS made by the playbook, the GPU node's VPC, subnet and zone
    (empty: use an existing StorageClass). ``.spec()`` builds the StorageSpec (InvalidSpecError says what to fix)."""

    def __init__(self, defaults: Any, pvcs: Sequence[str] = ()):
        self.defaults = defaults
        self.pvc = PvcPicker(pvcs, defaults.pvc_name)
        self.vpc_id = _field(w.Text, "VPC ID", value=defaults.vpc_id or "", placeholder="vpc-… (the GPU node's VPC)")
        self.subnet_id = _field(w.Text, "Subnet ID", value=defaults.subnet_id or "",
                                placeholder="subnet-… (in that VPC)")
        self.zone = _field(w.Text, "Zone", value=defaults.zone or "", placeholder="ap-guangzhou-3 (the GPU node's)")
        self.message = w.HTML()
        for widget in (self.pvc.combo, self.vpc_id, self.subnet_id, self.zone):
            widget.observe(lambda _: self._check(), names="value")
        super().__init__([self.pvc, self.vpc_id, self.subnet_id, self.zone, self.message])
        self._check()

    def _check(self) -> None:
        try:
            spec = self.spec()
            self.problem = ""
            made = (f"the playbook creates StorageClass '{spec.storage_class}' (CFS) in this VPC and subnet"
                    if spec.creates_storage_class else
                    f"StorageClass '{spec.storage_class}' must exist (or give VPC and subnet to create it)")
            self.message.value = _message(f"Valid: {made}.", True)
        except PlaybookError as exc:
            self.problem = str(exc)
            self.message.value = _message(self.problem, False)

    def spec(self):
        """The StorageSpec the form describes."""
        given = {name: (getattr(self, name).value.strip() or None) for name in ("vpc_id", "subnet_id", "zone")}
        return replace(self.defaults, pvc_name=self.pvc.pvc_name, **given)

    def storage_class_preview(self) -> str:
        """The CFS StorageClass the tutorial creates, as YAML, with the form's VPC, subnet and zone; a value not
        given yet shows as a ``<…>`` placeholder saying where to find it (the YAML is then for reading only)."""
        given = {name: getattr(self, name).value.strip() for name in PLACEHOLDERS}
        stand_in = {name: value or STAND_INS[name] for name, value in given.items()}
        manifest = build_storage_class(replace(self.defaults, **stand_in))
        text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
        for name, value in given.items():
            if not value:
                text = text.replace(STAND_INS[name], PLACEHOLDERS[name])
        missing = [name for name, value in given.items() if not value]
        head = (f"# Placeholders: give {', '.join(missing)} in the form above to apply this StorageClass.\n"
                if missing else "")
        return head + text

    def rows(self):
        return [("PVC", self.pvc.combo.value), ("VPC ID", self.vpc_id.value or "-"),
                ("Subnet ID", self.subnet_id.value or "-"), ("Zone", self.zone.value or "-"),
                ("check", self.problem or "valid")]


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
        self.dropdown.observe(lambda _: self.refresh(), names="value")
        super().__init__([self.dropdown, self.verdict_html])
        self.refresh()

    @property
    def model(self) -> str:
        return self.dropdown.value

    @property
    def verdict(self):
        """The :class:`~tke_playbook.specs.fit.FitVerdict` for the chosen model on the node type (None without one)."""
        if self.node_type is None or getattr(self.node_type, "gpu", 1) is None:
            return None
        info = get_model(self.model)
        length = min(self.max_model_len or info.recommended_max_tokens or info.max_tokens, info.max_tokens)
        return check_fit(info, self.node_type, max_model_len=length, gpu_memory_utilization=self.gpu_memory_utilization,
                         tensor_parallel=self.tensor_parallel)

    def refresh(self) -> None:
        try:
            verdict = self.verdict
        except PlaybookError as exc:
            self.verdict_html.value = _message(str(exc), False)
            return
        if verdict is None:
            self.verdict_html.value = _message("No GPU node type chosen: the fit check is skipped.", True)
        else:
            self.verdict_html.value = _message(verdict_text(verdict), verdict.fits)

    def fit_text(self) -> str:
        try:
            verdict = self.verdict
        except PlaybookError as exc:
            return str(exc)
        return "no GPU node type chosen" if verdict is None else verdict_text(verdict)

    def rows(self):
        return [("Model", self.model), ("GPU fit", self.fit_text())]


class DownloadForm(_Form):
    """Model (with fit verdict), source hub, completions and parallelism. ``.spec()`` builds the DownloadSpec."""

    def __init__(self, defaults: Any, node_type: Any = None):
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

    def rows(self):
        return self.picker.rows() + [("Source", self.source.value), ("Completions (shards)", self.completions.value),
                                        ("Parallelism (pods at once)", self.parallelism.value),
                                        ("check", self.problem or "valid")]


class ServingForm(_Form):
    """The chart's main values, prefilled from a spec (the seed profile). ``.spec()`` builds the ServingSpec.
    With a ``node_type`` the GPU fit verdict follows the model, max_model_len, memory share and tpSize."""

    def __init__(self, defaults: Any, pvcs: Sequence[str] = (), node_type: Any = None):
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
        self.nodes = _field(w.BoundedIntText, "nodes (lwsGroupSize)", min=1, max=64,
                            value=defaults.lws_group_size)
        self.replicas = _field(w.BoundedIntText, "replicas", min=1, max=64, value=defaults.replicas)
        self.service_type = _field(w.Dropdown, "Service type", options=[t.value for t in ServiceType],
                                   value=defaults.service_type.value)
        self.service_port = _field(w.BoundedIntText, "Service port", min=1, max=65535, value=defaults.service_port)
        self.api_key_required = w.Checkbox(description="Require an API key (kept in a Secret)",
                                           value=defaults.api_key_required, indent=False,
                                           layout=w.Layout(width=f"{LABEL_PX + MIN_VALUE_PX}px"))
        self.message = w.HTML()
        self._inputs = (self.model.dropdown, self.pvc.combo, self.max_model_len, self.max_batch_size,
                        self.gpu_memory_utilization, self.tp_size, self.nodes, self.replicas, self.service_type,
                        self.service_port, self.api_key_required)
        self.model.dropdown.observe(self._model_changed, names="value")
        for widget in self._inputs:
            widget.observe(lambda _: self._check(), names="value")
        super().__init__([self.model, self.pvc, self.max_model_len, self.max_batch_size, self.gpu_memory_utilization,
                          self.tp_size, self.nodes, self.replicas, self.service_type, self.service_port,
                          self.api_key_required, self.message])
        self._check()

    def _model_changed(self, change) -> None:
        """A new model starts from its own max_model_len (the tutorial's 2048, capped at the model's limit)."""
        self.max_model_len.value = default_max_model_len(change["new"])

    def _check(self) -> None:
        if self.model.node_type is not None:  # the verdict follows the numbers that change GPU memory
            self.model.max_model_len = self.max_model_len.value
            self.model.gpu_memory_utilization = self.gpu_memory_utilization.value
            self.model.tensor_parallel = self.tp_size.value
            self.model.refresh()
        try:
            self.spec()
            self.problem = ""
            self.message.value = _message("Valid.", True)
        except PlaybookError as exc:
            self.problem = str(exc)
            self.message.value = _message(self.problem, False)

    def spec(self):
        """The ServingSpec the form describes (raises InvalidSpecError with what to fix)."""
        tp, nodes = self.tp_size.value, self.nodes.value
        return self.defaults.replace(
            model=self.model.model, pvc_name=self.pvc.pvc_name, max_model_len=self.max_model_len.value,
            max_batch_size=self.max_batch_size.value, gpu_memory_utilization=self.gpu_memory_utilization.value,
            tp_size=tp, lws_group_size=nodes, gpu_count=max(1, tp * self.defaults.pp_size // nodes),
            replicas=self.replicas.value, service_type=self.service_type.value, service_port=self.service_port.value,
            api_key_required=self.api_key_required.value)

    def rows(self):
        fit = [("GPU fit", self.model.fit_text())] if self.model.node_type is not None else []
        return [(widget.description, widget.value) for widget in self._inputs] + fit + [
            ("check", self.problem or "valid")]


class TextForm(_Form):
    """A sentence to send, prefilled (the tutorial's by default). ``.text`` reads it; an emptied box is an error
    (shown under the box as you type, raised by ``.text``), never silently the default sentence."""

    def __init__(self, description: str, default: str):
        if not default or not default.strip():
            raise InvalidSpecError("The default text is empty: pass a sentence", field="text", value=default)
        self.default = default
        self.area = w.Textarea(value=default, description=description, style=_STYLE,
                               layout=w.Layout(width=f"{LABEL_PX + 420}px", height="70px"))
        self.message = w.HTML()
        self.area.observe(lambda _: self._check(), names="value")
        super().__init__([self.area, self.message])

    def _check(self) -> None:
        try:
            self.text
            self.message.value = ""
        except InvalidSpecError as exc:
            self.message.value = _message(str(exc), False)

    @property
    def text(self) -> str:
        value = self.area.value.strip()
        if not value:
            raise InvalidSpecError("The sentence box is empty: type a sentence to embed, then run the next cells",
                                   field="text", value=self.area.value)
        return value

    def rows(self):
        return [(self.area.description, self.text)]
