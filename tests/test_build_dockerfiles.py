"""More Dockerfiles built by layerkit and by ``buildah build --format docker --layers`` (issue 14): each
compared by ``test_build.compare`` (root filesystems path by path and file by file, the configs, the number
of layers and the ``empty_layer`` flags), then what each is about checked in layerkit's image."""

from __future__ import annotations

import pytest
from test_build import World, _tree, compare, world  # noqa: F401  (world: the module's fixture)

pytestmark = pytest.mark.tools

B = "localhost/lk-busybox:1"


def test_entrypoint_and_cmd_interplay(world: World) -> None:  # noqa: F811
    """Exec-form ENTRYPOINT with CMD as its default arguments; a later CMD replaces CMD only; a later
    shell-form ENTRYPOINT is wrapped in the shell and keeps the CMD this Dockerfile set (Docker resets only
    a CMD inherited from the base: ``cmdSet`` in moby's dispatchers.go)."""
    df = f"""FROM {B}
ENTRYPOINT ["/bin/echo", "entry"]
CMD ["first"]
CMD ["second", "arg"]
ENTRYPOINT echo "$HOME" shell-form
"""
    cfg = compare(world, "entry-cmd", df)["config"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", 'echo "$HOME" shell-form'] and cfg["Cmd"] == ["second", "arg"]


def test_variables_in_workdir_copy_and_run(world: World) -> None:  # noqa: F811
    """ENV used by WORKDIR, COPY's destination and RUN; a relative COPY lands under WORKDIR; ARG default
    overridden per stage, unset in a stage that does not declare it."""
    df = f"""ARG VERSION=1.0
FROM {B}
ENV APP=/srv/app
WORKDIR $APP
COPY conf.ini ${{APP}}/conf/
COPY notes.txt docs/
ARG VERSION
RUN echo "$VERSION in $(pwd)" > version.txt && ls -R "$APP" > /listing
WORKDIR sub
RUN pwd > /where
"""
    # WORKDIR makes a layer in the classic builder and none in buildah (test_build's workdir test): the
    # layers are compared there, the files and the config here
    cfg = compare(world, "vars", df, files={"conf.ini": "[x]\n", "notes.txt": "n\n"}, layers=False)
    assert cfg["config"]["WorkingDir"] == "/srv/app/sub"
    root = world.root / "lk-vars" / "rootfs"
    assert (root / "srv/app/version.txt").read_text() == "1.0 in /srv/app\n"
    assert (root / "where").read_text() == "/srv/app/sub\n"
    assert "conf.ini" in (root / "listing").read_text() and (root / "srv/app/docs/notes.txt").is_file()


def test_deletions_whiteouts_and_an_emptied_directory(world: World) -> None:  # noqa: F811
    """A RUN that deletes a directory a lower layer filled and makes it again (an opaque directory or
    whiteouts, however each tool writes it), deletes base files, and replaces a file by a directory."""
    df = f"""FROM {B}
RUN mkdir -p /opt/a/deep && echo 1 > /opt/a/f && echo 2 > /opt/a/deep/g && echo file > /opt/b
RUN rm -rf /opt/a && mkdir /opt/a && echo new > /opt/a/h && rm /opt/b && mkdir /opt/b && rm /bin/vi
RUN rm -rf /tmp && mkdir -m 1777 /tmp
"""
    compare(world, "deletes", df)
    ours = _tree(world.root / "lk-deletes" / "rootfs")
    assert "/opt/a/f" not in ours and "/opt/a/deep" not in ours and ours["/opt/a/h"][0] == "file"
    assert ours["/opt/b"][0] == "dir" and "/bin/vi" not in ours and ours["/tmp"][2] == 0o1777


def test_user_by_name_owns_what_run_and_copy_make(world: World) -> None:  # noqa: F811
    """USER by name (resolved in the image's /etc/passwd at RUN time); COPY --chown by name; files a RUN
    step makes belong to the user; WORKDIR made before USER stays root's. (The base has no /etc: Docker's
    init layer would give a RUN one, layerkit's runtime does not, so the RUN makes it.)"""
    df = f"""FROM {B}
RUN mkdir -p /etc && printf 'root:x:0:0::/root:/bin/sh\\napp:x:1500:1600::/home/app:/bin/sh\\n' > /etc/passwd \\
    && printf 'root:x:0:\\napp:x:1600:\\n' > /etc/group \\
    && mkdir -p /home/app && chown app:app /home/app
WORKDIR /home/app
USER app
RUN echo "$(id -u):$(id -g)" > whoami && mkdir cache
COPY --chown=app:app data.txt ./data.txt
COPY plain.txt /plain.txt
USER root
"""
    compare(world, "username", df, files={"data.txt": "d\n", "plain.txt": "p\n"})
    ours = _tree(world.root / "lk-username" / "rootfs")
    assert ours["/home/app/whoami"][3:5] == (1500, 1600) and ours["/home/app/cache"][3:5] == (1500, 1600)
    assert ours["/home/app/data.txt"][3:5] == (1500, 1600) and ours["/plain.txt"][3:5] == (0, 0)
    assert (world.root / "lk-username" / "rootfs" / "home/app/whoami").read_text() == "1500:1600\n"


def test_stages_from_stages_with_per_stage_args(world: World) -> None:  # noqa: F811
    """A stage FROM an earlier stage inherits its files, ENV and WORKDIR; ARG values are per stage; COPY
    --from a stage named later in the file than the one using it is not allowed, from an earlier one it is."""
    df = f"""ARG FLAVOUR=plain
FROM {B} AS base
ENV STAGE=base
WORKDIR /build
ARG FLAVOUR
RUN echo "$FLAVOUR" > flavour
FROM base AS tools
RUN echo "$STAGE-$FLAVOUR" > /tools.txt
FROM {B}
COPY --from=tools /build/flavour /tools.txt /out/
ARG FLAVOUR
RUN echo "final $FLAVOUR" > /final
"""
    compare(world, "stages", df, build_args={"FLAVOUR": "hot"})
    root = world.root / "lk-stages" / "rootfs"
    assert (root / "out/flavour").read_text() == "hot\n"
    assert (root / "out/tools.txt").read_text() == "base-\n"  # FLAVOUR not declared in stage tools
    assert (root / "final").read_text() == "final hot\n"
