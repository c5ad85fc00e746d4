"""What a pull or push did: per layer, and the lines ``docker pull`` / ``docker push`` print for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...engine.digests import short
from ...engine.progress import Status
from ...engine.reference import parse_docker_ref

# Docker's words for what happened to a layer, by operation and outcome
_ACTIONS = {
    ("pull", Status.EXISTS): "Already exists",
    ("pull", Status.DONE): "Pull complete",
    ("push", Status.EXISTS): "Layer already exists",
    ("push", Status.DONE): "Pushed",
}


@dataclass
class LayerTransfer:
    """What happened to one layer blob.

    ``status`` is :attr:`Status.EXISTS` (the destination had it), :attr:`Status.MOUNTED` (push: mounted
    from the repository ``source``) or :attr:`Status.DONE` (moved). ``action`` says it as Docker prints it:
    for a pull ``Already exists`` or ``Pull complete``; for a push ``Layer already exists``, ``Mounted from
    REPO`` or ``Pushed``. ``size`` is the blob's size in bytes.
    """

    digest: str
    size: int
    action: str
    status: Status = Status.DONE
    source: str | None = None

    @classmethod
    def of(cls, kind: str, digest: str, size: int, status: Status, source: str | None = None) -> LayerTransfer:
        """The record of a layer of a ``pull`` or ``push`` (``kind``) that ended in ``status``."""
        action = f"Mounted from {source}" if status == Status.MOUNTED else _ACTIONS[(kind, status)]
        return cls(digest, size, action, status, source)

    @property
    def moved(self) -> bool:
        """True when the blob's bytes went over the wire."""
        return self.status == Status.DONE


@dataclass
class TransferResult:
    """The outcome of a pull or push.

    ``digest`` is the manifest digest on the registry (for a pull by tag of a multi-platform image, the
    index's digest, as Docker prints it). ``transferred_bytes`` counts the layer bytes that went over the
    wire, ``skipped_bytes`` those of the layers that did not have to (present, or mounted); manifests and
    configs are not counted.
    """

    reference: str
    digest: str
    image_id: str
    layers: list[LayerTransfer] = field(default_factory=list)
    transferred_bytes: int = 0
    skipped_bytes: int = 0
    registry: str = ""
    platform: str | None = None
    kind: str = ""  # "pull" or "push"
    manifest_size: int = 0
    up_to_date: bool = False  # pull: the tag already named this image

    def to_json(self) -> dict:
        """JSON-ready form (snake_case keys, sizes in bytes)."""
        return {"kind": self.kind, "reference": self.reference, "digest": self.digest, "image_id": self.image_id,
                "registry": self.registry, "platform": self.platform,
                "transferred_bytes": self.transferred_bytes, "skipped_bytes": self.skipped_bytes,
                "layers": [{"digest": la.digest, "size": la.size, "action": la.action} for la in self.layers]}

    def lines(self) -> list[str]:
        """What ``docker pull`` / ``docker push`` print for this transfer (after the progress bars)."""
        ref = parse_docker_ref(self.reference)
        if self.kind == "push":
            out = [f"The push refers to repository [{ref.repository}]"]
            out += [f"{short(la.digest)}: {la.action}" for la in reversed(self.layers)]
            out.append(f"{ref.tag}: digest: {self.digest} size: {self.manifest_size}")
            return out
        out = [f"{ref.tag or ref.digest}: Pulling from {ref.path}"]
        out += [f"{short(la.digest)}: {la.action}" for la in self.layers]
        out.append(f"Digest: {self.digest}")
        status = "Image is up to date for" if self.up_to_date else "Downloaded newer image for"
        out.append(f"Status: {status} {self.reference}")
        return out
