# The `highlander` command in a small runtime image, built from a binary built on the
# host (the way release pipelines often do it): `scripts/image` builds the binary, puts
# it beside this file in a build context, and runs
#   docker build --build-arg BASE=… -t highlander:VERSION CONTEXT
# BASE is the official slim Debian image by default; where no image registry is
# reachable, the Debian root `scripts/offline-images` builds locally.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# CA certificates for stores reached over TLS (rustls reads the system's roots for some
# clients); a system user with no shell and no home to own the process.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 highlander \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin highlander

COPY highlander /usr/local/bin/highlander

# As the container's PID 1, highlander reaps orphans, forwards nothing it does not
# handle, and on SIGTERM (docker stop, a pod's deletion) stops the command, releases the
# lease and exits.
USER 10001:10001
ENTRYPOINT ["highlander"]
CMD ["--help"]
