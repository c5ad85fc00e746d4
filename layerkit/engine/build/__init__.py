"""The Dockerfile builder: ``layerkit build`` as Docker's classic builder runs it.

- :mod:`.dockerfile`: parsing (Docker's own Go parser, through the ``dockerfile`` package) into stages of
  instructions, and the word expansion of ARG and ENV variables with Docker's rules (:class:`.dockerfile.Lexer`);
- :mod:`.context`: the build context, ``.dockerignore`` with Docker's pattern rules, COPY sources and their
  checksums;
- :mod:`.layerdir`: a new layer written as an overlayfs upper directory (what COPY, ADD and WORKDIR add);
- :mod:`.cache`: the classic build cache (a child of the same parent with the same ``container_config``);
- :mod:`.state`: a stage's build state and how a step records its image (config, ``container_config``, history);
- :mod:`.instructions` (ENV, LABEL, CMD ... WORKDIR), :mod:`.copying` (COPY, ADD), :mod:`.run` (RUN): what each
  instruction does; :mod:`.steps` says which runs which;
- :mod:`.progress`: what a build prints, the classic builder's way or BuildKit's (``--format buildkit``, which
  also gives the history BuildKit writes: :meth:`.state.State.history_text`);
- :mod:`.squash`: ``--squash``, the built image as its base plus one layer (Docker's ``SquashImage``);
- :mod:`.builder`: the loop over the stages (:func:`.builder.build`), its output and its result.
"""
