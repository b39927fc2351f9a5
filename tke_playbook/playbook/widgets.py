"""ipywidgets forms for the notebooks, built from the catalog; each reads back into a typed value or spec.

Every widget is usable without touching it: its defaults give a valid headless run (nbval, ``make demo``).
Besides the live widget, each one offers a static HTML table of its current values (``text/html``), which is
what an exported notebook shows where no widget JavaScript runs (``make demo``'s HTML, GitHub).

    picker = NodeTypePicker(pb.node_types())   # then: picker.node_type
    form = ServingForm(pb.serving_defaults())  # then: form.spec()  (InvalidSpecError says what to fix)
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import ipywidgets as w
import yaml

from ..errors import FitError, InvalidSpecError, PlaybookError
from ..manifests.storage import build_storage_class
from ..specs.catalog import get_model, list_models
from ..specs.download import DownloadSpec, Source
from ..specs.fit import check_fit
from ..specs.names import validate_name
from ..specs.serving import ServiceType, ServingSpec, check_on_node, layout_changes, node_changes, resolve
from ..specs.storage import DEFAULT_PVC, StorageSpec
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
    return f'<div style="color:{colour};max-width:700px">{html.escape(text)}</div>' if text else ""


def in_form_words(message: str, words: Sequence[tuple[str, str]]) -> str:
    """``message`` with the spec's field names replaced by what the form shows (``words``: (field, widget) pairs,
    tried in order), so a refusal names the box or checkbox to change, not a Python field."""
    for field, widget in words:
        message = re.sub(rf"(?<![\w'=]){re.escape(field)}(?![\w=])", widget, message)
    return message


@contextlib.contextmanager
def form_words(words: Sequence[tuple[str, str]]):
    """Re-raise a toolkit error from the block with its message in the form's words (:func:`in_form_words`), so
    the red block of a spec cell names the widget too."""
    try:
        yield
    except PlaybookError as exc:
        exc.message = in_form_words(exc.message, words)
        exc.args = (exc.message,)
        raise


# The spec's words for the form's widgets, longest first ("set api_key_required=True" before "api_key_required").
SERVING_WORDS = (("set api_key_required=True", "tick 'Require an API key'"),
                 ("use service type", "set 'Service type' to"), ("api_key_required", "'Require an API key'"),
                 ("tensor_parallel", "tpSize"), ("tp_size", "tpSize"), ("pp_size", "ppSize"),
                 ("lws_group_size", "nodes (lwsGroupSize)"), ("max_batch_size", "maxBatchSize"),
                 ("service port", "Service port"), ("choose a node type", "choose another node type in 00"),
                 ("set gpu to", "choose in 00 a node type with"))
STORAGE_WORDS = (("vpc_id, subnet_id and zone", "VPC ID, Subnet ID and Zone"), ("vpc_id", "VPC ID"),
                 ("subnet_id", "Subnet ID"), ("zone '", "Zone '"))
DOWNLOAD_WORDS = (("completions", "Completions"), ("parallelism", "Parallelism"))


class _Form(w.VBox):
    """A VBox that also renders as a static table of its values (:meth:`rows`) and has a one-line repr. A form
    that reads into a spec names its type (``spec_type``) and has ``.spec()``."""

    spec_type: type | None = None

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

    def __init__(self, pvcs: Sequence[str] = (), default: str = DEFAULT_PVC, quiet: bool = False):
        options = sorted(set(pvcs) | {default})
        self.combo = _field(w.Combobox, "PVC", options=options, value=default, ensure_option=False,
                            placeholder=DEFAULT_PVC)
        self.message = w.HTML()  # quiet: the form around it says what is wrong, once
        self.combo.observe(lambda _: self._check(), names="value")
        super().__init__([self.combo] if quiet else [self.combo, self.message])
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

    spec_type = StorageSpec

    def __init__(self, defaults: Any, pvcs: Sequence[str] = ()):
        self.defaults = defaults
        self.pvc = PvcPicker(pvcs, defaults.pvc_name, quiet=True)
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
                    f"StorageClass '{spec.storage_class}' must exist (or give VPC ID, Subnet ID and Zone - all three - "
                    f"to create it)")
            self.message.value = _message(f"Valid: {made}.", True)
        except PlaybookError as exc:
            self.problem = in_form_words(str(exc), STORAGE_WORDS)
            self.message.value = _message(self.problem, False)

    def spec(self):
        """The StorageSpec the form describes."""
        given = {name: (getattr(self, name).value.strip() or None) for name in ("vpc_id", "subnet_id", "zone")}
        with form_words(STORAGE_WORDS):
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
    """Pick a catalog model; the GPU fit verdict for ``node_type`` updates as you choose. ``.model`` reads it.
    ``unavailable`` maps models this target cannot use now to why (e.g. "needs a hub" offline): their choice says
    so, and the verdict says why instead of "fits"."""

    def __init__(self, default: str, node_type: Any = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None, tensor_parallel: int | None = None,
                 unavailable: Mapping[str, str] | None = None):
        self.node_type = node_type
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel = tensor_parallel
        self.unavailable = dict(unavailable or {})
        self.dropdown = _field(w.Dropdown, "Model", value=get_model(default).hf_id, options=[
            (f"{m.hf_id} ({m.params / 1e9:.2f}B, dim {m.dim}){_unavailable_tag(self.unavailable.get(m.hf_id))}",
             m.hf_id) for m in list_models()])
        self.verdict_html = w.HTML()
        self.dropdown.observe(lambda _: self.refresh(), names="value")
        super().__init__([self.dropdown, self.verdict_html])
        self.refresh()

    @property
    def model(self) -> str:
        return self.dropdown.value

    def require_available(self) -> None:
        """Raise InvalidSpecError when the chosen model cannot be used on this target now (says why)."""
        why = self.unavailable.get(self.model)
        if why:
            raise InvalidSpecError(f"{self.model} {why}", field="model", value=self.model)

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
            self.require_available()
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
            self.require_available()
            verdict = self.verdict
        except PlaybookError as exc:
            return str(exc)
        return "no GPU node type chosen" if verdict is None else verdict_text(verdict)

    def rows(self):
        return [("Model", self.model), ("GPU fit", self.fit_text())]


def _unavailable_tag(why: str | None) -> str:
    """" - needs a hub" for a model this target cannot use now (the reason's words before its colon)."""
    return f" - {why.split(':')[0]}" if why else ""


def _number(kind, description: str, value):
    """A number box that never changes what was typed (ipywidgets' bounded boxes clamp silently): the spec checks
    the range and the form says what is allowed."""
    return _field(kind, description, value=value)


class DownloadForm(_Form):
    """Model (with fit verdict), source hub, completions and parallelism. ``.spec()`` builds the DownloadSpec.
    ``source_note`` (e.g. the local target's offline mirror) is shown beside the hub's name."""

    spec_type = DownloadSpec

    def __init__(self, defaults: Any, node_type: Any = None, unavailable: Mapping[str, str] | None = None,
                 source_note: str = ""):
        self.defaults = defaults
        self.source_note = source_note
        self.picker = ModelPicker(defaults.model, node_type, unavailable=unavailable)
        self.source = _field(w.Dropdown, "Source", value=Source(defaults.source).value,
                             options=[(s.value + (f" ({source_note})" if source_note else ""), s.value)
                                      for s in Source])
        self.completions = _number(w.IntText, "Completions (shards)", defaults.completions)
        self.parallelism = _number(w.IntText, "Parallelism (pods at once)", defaults.parallelism)
        self.message = w.HTML()
        for widget in (self.source, self.completions, self.parallelism, self.picker.dropdown):
            widget.observe(lambda _: self._check(), names="value")
        super().__init__([self.picker, self.source, self.completions, self.parallelism, self.message])
        self._check()

    def _check(self) -> None:
        try:
            self.spec()
            self.problem = ""
        except PlaybookError as exc:
            self.problem = in_form_words(str(exc), DOWNLOAD_WORDS)
        said_above = self.picker.model in self.picker.unavailable  # the picker's line already says why
        self.message.value = "" if said_above else _message(self.problem, False)

    def spec(self):
        """The DownloadSpec the form describes (the revision and repository follow a change of hub or model)."""
        self.picker.require_available()
        with form_words(DOWNLOAD_WORDS):
            return self.defaults.replace(model=self.picker.model, source=self.source.value,
                                         completions=self.completions.value, parallelism=self.parallelism.value)

    def rows(self):
        source = self.source.value + (f" ({self.source_note})" if self.source_note else "")
        return self.picker.rows() + [("Source", source), ("Completions (shards)", self.completions.value),
                                        ("Parallelism (pods at once)", self.parallelism.value),
                                        ("check", self.problem or "valid")]


class ServingForm(_Form):
    """The chart's main values, prefilled from a resolved spec (the seed profile). ``.spec()`` changes the choices
    that spec was resolved from by the form's values and resolves them into the ServingSpec. With a ``node_type`` (chosen in 00) the spec records its GPU and pins its instance type, a layout the node
    cannot hold is refused (GPUs per pod = tpSize × ppSize ÷ nodes), and so is a model the fit verdict says does
    not fit; the verdict follows the model, max_model_len, memory share and tpSize."""

    spec_type = ServingSpec

    def __init__(self, defaults: Any, pvcs: Sequence[str] = (), node_type: Any = None,
                 unavailable: Mapping[str, str] | None = None):
        self.defaults = defaults
        self.node_type = node_type
        self.model = ModelPicker(defaults.model, node_type, defaults.max_model_len,
                                 defaults.gpu_memory_utilization, defaults.tp_size, unavailable=unavailable)
        if node_type is None:
            self.model.verdict_html.layout.display = "none"
        self.pvc = PvcPicker(pvcs, defaults.pvc_name, quiet=True)
        self.max_model_len = _number(w.IntText, "max_model_len", defaults.max_model_len)
        self.max_batch_size = _number(w.IntText, "maxBatchSize (max-num-seqs)", defaults.max_batch_size)
        self.gpu_memory_utilization = _field(w.FloatText, "gpu_memory_utilization", step=0.01,
                                             value=defaults.gpu_memory_utilization)
        self.tp_size = _number(w.IntText, "tpSize (tensor parallel)", defaults.tp_size)
        self.nodes = _number(w.IntText, "nodes (lwsGroupSize)", defaults.lws_group_size)
        self.replicas = _number(w.IntText, "replicas", defaults.replicas)
        self.service_type = _field(w.Dropdown, "Service type", options=[t.value for t in ServiceType],
                                   value=defaults.service_type.value)
        self.service_port = _number(w.IntText, "Service port", defaults.service_port)
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
        self.model.max_model_len = self.max_model_len.value  # the verdict follows the numbers that change GPU memory
        self.model.gpu_memory_utilization = self.gpu_memory_utilization.value
        self.model.tensor_parallel = self.tp_size.value
        try:
            spec = self.spec()
        except PlaybookError as exc:
            self.problem = in_form_words(str(exc), SERVING_WORDS)
            self.model.verdict_html.value = ""  # the one red line below says what is wrong
            self.message.value = _message(self.problem, False)
            return
        self.problem = ""
        self.model.refresh()
        self.message.value = _message(f"Valid. {pod_layout_text(spec, self.node_type)}", True)

    def spec(self):
        """The ServingSpec the form describes; InvalidSpecError (or FitError) says, in the form's words, what to
        change."""
        with form_words(SERVING_WORDS):
            return self._spec()

    def _spec(self):
        self.model.require_available()
        choices = self.defaults.choices.replace(
            model=self.model.model, pvc_name=self.pvc.pvc_name, max_model_len=self.max_model_len.value,
            max_batch_size=self.max_batch_size.value, gpu_memory_utilization=self.gpu_memory_utilization.value,
            replicas=self.replicas.value, service_type=self.service_type.value, service_port=self.service_port.value,
            api_key_required=self.api_key_required.value, **node_changes(self.node_type),
            **layout_changes(self.defaults, tp=self.tp_size.value, nodes=self.nodes.value))
        spec = resolve(choices)
        if self.node_type is not None:
            check_on_node(spec, self.node_type)
            verdict = check_fit(spec.model, self.node_type, spec.max_model_len, spec.gpu_memory_utilization,
                                tensor_parallel=spec.tp_size, max_num_batched_tokens=spec.max_num_batched_tokens)
            if not verdict.fits:
                raise FitError(verdict_text(verdict), obj=verdict)
        return spec

    def rows(self):
        fit = [("GPU fit", self.model.fit_text())] if self.model.node_type is not None else []
        return [(widget.description, widget.value) for widget in self._inputs] + fit + [
            ("check", self.problem or "valid")]


def pod_layout_text(spec, node_type: Any = None) -> str:
    """What the layout asks of the nodes, in one sentence: GPUs per pod = tp × pp ÷ nodes."""
    where = f" on {node_type.name}" if node_type is not None else ""
    gpus = "GPU" if spec.gpu_count == 1 else "GPUs"
    return (f"Each pod gets {spec.gpu_count} {gpus}{where} (tpSize {spec.tp_size} × ppSize {spec.pp_size} ÷ "
            f"{spec.lws_group_size} node(s)); {spec.replicas} replica(s).")


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
