"""Content files that are also a user's output: delivery by hard link, and what it obliges.

Where the output is on the store's file system, a download is delivered as a hard link to the
task's content file (``Store.deliver`` with ``hard_link``): the bytes are written once, and a
100 GB model takes 100 GB of disk, not 200. Copies are what ``--no-hard-link`` asks for, what
another file system needs, and what a second output of the same task gets: a content file is
linked to one output at a time (``may_link``; delivering again to that same output links
again), so two outputs never share a file. Only ``--force-hard-link`` shares it (``share``).
A link lands on the file that was counted: one whose name was replaced meanwhile (another
process's private copy) makes the delivery a copy too.

What is linked is verified like a copy: every piece of the staged link is re-hashed before it
is renamed into place (``linked_check``; skipping what this process just wrote was tried and
not kept: another process sharing the store can write between our writes, see
``docs/benchmarks.md``). A link made by someone else between the check and ours is seen in
the link count afterwards and turns the delivery into a copy.

Once linked, the user may write the file. The store then:

- never writes into a content file with more than one name, nor through a handle whose file
  the store has since replaced (only the output names it then): ``TaskStorage`` refuses to
  write a piece into one (``_writable_here``), and opening a task whose file an output
  shares, unless the task succeeded and the file still has the fingerprint its pieces were
  verified under, first takes a private copy (``unshared``: a reflink where it can, renamed
  over the store's own name, under the store lock) and re-verifies that. The user's file
  keeps whatever they wrote.
  ``TaskStorage.release_space`` does not cut such a file either.
- re-hashes the pieces of such a file before serving them to peers: a link changes the file's
  change stamp (which counts its names), so the piece server no longer vouches for them; its
  cached handle on a replaced file is reopened and drops no piece. The proxy sends a piece of
  a shared file only from a whole read that matched the piece's digest.
- does not count it as its own: it uses no room the store could free (``gc.py``).

Left open: a write racing the few system calls between a writer's link-count check and its
write (another process filling the same task as it is linked, a truncation by
``release_space``), and writes through a descriptor opened on an earlier output of the same
file that was deleted since. A crash while taking a private copy leaves its temporary file
(``.<task id>.<hex>.private``) in the content directory until the next private copy of that
task removes it (GC does not know the name).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from damselfly.core.errors import StorageError
from damselfly.storage.content import FILE_MODE, ContentFile, os_error
from damselfly.storage.metadata import MetadataStore, TaskMeta, TaskState
from damselfly.storage.output import copy_file

logger = logging.getLogger(__name__)


class LinkRaced(StorageError):
    """Another name appeared for the content file while it was being linked: copy instead."""


def may_link(content: ContentFile, dest: Path, names: int, *, share: bool) -> bool:
    """Link when the file has no output yet (``names``: its link count, taken once before),
    or only ``dest`` itself, or when told to all the same (``share``)."""
    return share or names == 1 or (names == 2 and _same_file(dest, content.identity()))


def linked_check(
    content: ContentFile, names: int, *, share: bool, verify: Callable[[Path], None]
) -> Callable[[Path], None]:
    """What ``deliver_file`` calls on the staged output: a link to the content file must be
    its only new name since ``names`` was counted (unless ``share``), else ``LinkRaced``;
    then ``verify`` it, every piece."""
    identity = content.identity()

    def check(staged: Path) -> None:
        st = os.stat(staged)
        linked = (st.st_dev, st.st_ino) == identity
        if linked and not share and st.st_nlink != names + 1:
            raise LinkRaced(f"{staged}: the store's file got another name meanwhile")
        if not linked and not share and st.st_nlink > 1:  # the store's name was replaced
            raise LinkRaced(f"{staged}: the store's file was replaced meanwhile")
        verify(staged)

    return check


def _same_file(path: Path, identity: tuple[int, int]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == identity


def unshared(
    content: ContentFile, meta: TaskMeta | None, metadata: MetadataStore
) -> tuple[ContentFile, bool]:
    """``content``, or, if an output shares it and it is not trusted as it is, a private copy
    opened in its place (``content`` closed; then True: its pieces must be re-verified)."""
    if content.links() == 1 or _trusted_as_is(content, meta, metadata):
        return content, False
    path = content.path
    content.close()
    _take_private_copy(path)
    logger.warning(
        "%s: a hard-linked output shares this file and it changed (or is not complete); "
        "the store keeps a copy of its own",
        path.name,
    )
    return ContentFile.open(path, create=False), True


def _trusted_as_is(content: ContentFile, meta: TaskMeta | None, metadata: MetadataStore) -> bool:
    """A succeeded task whose file has the fingerprint its pieces were verified under."""
    return (
        meta is not None
        and meta.state is TaskState.SUCCEEDED
        and metadata.verified_fingerprint(meta.task_id) == content.fingerprint()
    )


def _take_private_copy(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.*.private"):  # left by a crash meanwhile
        with contextlib.suppress(OSError):
            stale.unlink()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.private")
    try:
        copy_file(path, tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        raise os_error(path, exc, "copy") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
