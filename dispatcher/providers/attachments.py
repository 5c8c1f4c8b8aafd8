"""The attachments bucket: each file a row names is looked up before the send, then streamed.

A row's ``attachments`` name objects in the stack's bucket. Before a row takes an idempotency
record or a rate-limit slot, every object is looked up (``HeadObject``): a missing one, or a
total over ``ATTACHMENTS_MAX_BYTES``, fails the row ``invalid`` with the reason. The objects'
ETags join the content hash, so an object replaced under the same key is a new mail, not a
duplicate. At send time each object is read (``GetObject`` with ``If-Match`` on that ETag:
never a file other than the one checked) and streamed into the multipart request in chunks,
with its length known, so no file is held in memory whole.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from botocore.exceptions import BotoCoreError, ClientError

from dispatcher.model.message import Attachment, Message
from dispatcher.providers.errors import ConfigError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from dispatcher.config.settings import Settings

__all__ = ["Attachments", "AttachmentsUnavailableError"]


class AttachmentsUnavailableError(Exception):
    """S3 throttled or failed; the record is retried (a batch item failure)."""


class Attachments:
    """Looks up and opens the files of the attachments bucket.

    Parameters
    ----------
    bucket:
        ``ATTACHMENTS_BUCKET``; None where the deployment has none (a row with attachments
        then fails ``config``).
    s3_client:
        Injected by tests and the local stack; by default one is made lazily, so a
        deployment whose rows carry no attachments never builds an S3 client.
    """

    @classmethod
    def from_settings(cls, settings: Settings, s3_client: S3Client | None = None) -> Attachments:
        return cls(
            bucket=settings.attachments_bucket,
            max_total_bytes=settings.attachments_max_bytes,
            s3_client=s3_client,
        )

    def __init__(
        self, *, bucket: str | None, max_total_bytes: int, s3_client: S3Client | None = None
    ) -> None:
        self.bucket = bucket
        self._max_total = max_total_bytes
        self._client = s3_client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def resolve(self, message: Message) -> Message | list[str]:
        """The message with each attachment's size, ETag and type, and a content hash that
        covers them; or the problems that make it unsendable.

        Raises
        ------
        ConfigError
            No bucket is configured, or the function may not read it.
        AttachmentsUnavailableError
            S3 did not answer; retry later.
        """
        if not message.attachments:
            return message
        if not self.bucket:
            raise ConfigError(
                "attachments: this deployment has no attachments bucket (ATTACHMENTS_BUCKET)"
            )
        problems: list[str] = []
        resolved: list[Attachment] = []
        for index, attachment in enumerate(message.attachments):
            head = self._head(attachment.key)
            if head is None:
                problems.append(
                    f"attachments: attachments[{index}] names {attachment.key!r}, which is not "
                    f"in the bucket {self.bucket}"
                )
                continue
            content_type = head.get("ContentType") or ""
            if not content_type or content_type == "binary/octet-stream":
                content_type = mimetypes.guess_type(attachment.filename)[0] or (
                    "application/octet-stream"
                )
            resolved.append(
                replace(
                    attachment,
                    size=int(head["ContentLength"]),
                    etag=str(head["ETag"]),
                    content_type=content_type,
                )
            )
        total = sum(a.size or 0 for a in resolved)
        if total > self._max_total:
            problems.append(
                f"attachments: {total:,} bytes in all, over the limit of {self._max_total:,} "
                "(ATTACHMENTS_MAX_BYTES, blastengine's contract)"
            )
        if problems:
            return problems
        digest = hashlib.sha256(message.content_hash.encode())
        for attachment in resolved:
            digest.update(f"\n{attachment.key}\n{attachment.etag}".encode())
        return replace(message, attachments=tuple(resolved), content_hash=digest.hexdigest())

    def open(self, attachment: Attachment) -> BinaryIO:
        """The object's bytes as a stream of known length, exactly the version looked up."""
        if attachment.size is None or attachment.etag is None:
            raise ValueError(f"{attachment.key} was not resolved before being opened")
        try:
            response = self.client.get_object(
                Bucket=str(self.bucket), Key=attachment.key, IfMatch=attachment.etag
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise TransientError(
                f"attachments: {attachment.key!r} could not be read ({code}); "
                "replaced or removed since it was checked"
            ) from None
        except BotoCoreError as exc:
            raise TransientError(f"attachments: S3 did not answer ({exc})") from None
        return cast(BinaryIO, _SizedStream(response["Body"], attachment.size))

    def upload(self, path: Path, key: str) -> None:
        """Put a local file into the bucket under ``key`` (``dispatcher send --attach``)."""
        if not self.bucket:
            raise ConfigError("this stack has no attachments bucket")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            self.client.upload_file(
                str(path), self.bucket, key, ExtraArgs={"ContentType": content_type}
            )
        except (ClientError, BotoCoreError) as exc:
            raise AttachmentsUnavailableError(
                f"cannot upload {path} to {self.bucket}: {exc}"
            ) from None

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=str(self.bucket), Key=key))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code", "")
            if status == 404 or code in ("404", "NoSuchKey", "NotFound"):
                return None
            if status == 403 or code in ("403", "AccessDenied", "Forbidden"):
                raise ConfigError(
                    f"attachments: the function may not read {key!r} in {self.bucket} "
                    "(s3:GetObject on the bucket)",
                    http_status=403,
                ) from None
            raise AttachmentsUnavailableError(f"S3 {code or status}: {exc}") from exc
        except BotoCoreError as exc:
            raise AttachmentsUnavailableError(f"S3 unreachable: {exc}") from exc


class _SizedStream(io.RawIOBase):
    """An S3 body that says its length (so the request has a Content-Length) while it is
    read in chunks. Only the length can be sought; the bytes are read once, in order."""

    def __init__(self, body: Any, size: int) -> None:  # a botocore StreamingBody
        self._body = body
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._body.read(size) if size is not None and size >= 0 else self._body.read()
        self._position += len(chunk)
        return bytes(chunk)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END and offset == 0:
            return self._size  # httpx asks the length this way, then seeks back
        if whence == os.SEEK_SET and offset == self._position:
            return self._position
        raise io.UnsupportedOperation("an S3 body is read once, in order")

    def close(self) -> None:
        self._body.close()
        super().close()
