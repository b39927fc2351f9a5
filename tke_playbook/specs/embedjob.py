"""What a bulk embedding Job is: which staged corpus, which served model behind which endpoint, how many shards
(Job indexes) and pods at once, and where (namespace, PVC). Frozen and validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidSpecError
from .download import DEFAULT_IMAGE
from .names import slug, validate_name, validate_quantity, validate_subdomain
from .plain import PlainSpec
from .serving import ServingSpec
from .storage import DEFAULT_PVC

COMPONENT = "bulk-embedding"
MAX_SHARDS = 256


def _whole(value, what: str, example: int, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise InvalidSpecError(f"{what}={value!r}: use a whole number from 1 to {top}, e.g. {example}", field=what,
                               value=value)
    return value


@dataclass(frozen=True)
class EmbedJobSpec(PlainSpec):
    """An Indexed Job embedding the staged corpus ``corpus`` (``<pvc>/corpora/<corpus>``) through ``endpoint``
    (the deployed Service; :meth:`for_serving` derives it), one shard per index, ``parallelism`` pods at a time."""

    corpus: str
    model: str
    endpoint: str
    shards: int = 4
    parallelism: int = 4
    namespace: str = "default"
    pvc: str = DEFAULT_PVC
    api_key_secret: str | None = None     # the serving Secret holding the API key (key 'api-key'); None: no key
    image: str = DEFAULT_IMAGE
    cpu: str = "500m"
    memory: str = "512Mi"
    backoff_limit_per_index: int = 3
    ttl_seconds_after_finished: int = 3600

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, str) or not slug(self.corpus):
            raise InvalidSpecError(f"corpus {self.corpus!r}: give the staged corpus's name", field="corpus",
                                   value=self.corpus)
        if not isinstance(self.endpoint, str) or not self.endpoint.startswith(("http://", "https://")):
            raise InvalidSpecError(f"endpoint {self.endpoint!r} must be the Service URL, e.g. "
                                   "http://vllm-bge-m3.default.svc:60000", field="endpoint", value=self.endpoint)
        _whole(self.shards, "shards", 4, MAX_SHARDS)
        _whole(self.parallelism, "parallelism", 4, MAX_SHARDS)
        if self.parallelism > self.shards:
            raise InvalidSpecError(f"parallelism {self.parallelism} is above shards {self.shards}: set it to at most "
                                   f"{self.shards}", field="parallelism", value=self.parallelism)
        validate_name(self.namespace, "Namespace")
        validate_name(self.pvc, "PVC name")
        validate_name(self.name, "Job name")
        if self.api_key_secret is not None:
            validate_subdomain(self.api_key_secret, "API key Secret name")
        validate_quantity(self.cpu, "cpu")
        validate_quantity(self.memory, "memory")
        if not isinstance(self.image, str) or not self.image.strip() or " " in self.image:
            raise InvalidSpecError(f"image {self.image!r} is not an image reference: use e.g. '{DEFAULT_IMAGE}'",
                                   field="image", value=self.image)
        _whole(self.backoff_limit_per_index + 1, "backoff_limit_per_index + 1", 4, 101)
        _whole(self.ttl_seconds_after_finished + 1, "ttl_seconds_after_finished + 1", 3601, 10 ** 7)

    @property
    def name(self) -> str:
        return f"embed-{slug(self.corpus, max_length=20)}-{slug(self.model, max_length=30)}".rstrip("-")

    @classmethod
    def for_serving(cls, serving: ServingSpec, corpus: str, **options) -> "EmbedJobSpec":
        """The Job for the deployment ``serving`` describes: its Service's cluster DNS name and port, its served
        model name, its API-key Secret and its namespace and PVC."""
        endpoint = f"http://{serving.name}.{serving.namespace}.svc:{serving.service_port}"
        options.setdefault("api_key_secret", serving.api_key_secret if serving.api_key_required else None)
        options.setdefault("namespace", serving.namespace)
        options.setdefault("pvc", serving.pvc_name)
        return cls(corpus=corpus, model=serving.served_model_name, endpoint=endpoint, **options)
