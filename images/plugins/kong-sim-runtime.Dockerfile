# The Debian-based kong-sim variant for --sim runs of Python and JavaScript
# plugins (the kong-sim image is FROM scratch: no interpreter). Build context:
# images/plugins/. DEBIAN_IMAGE is debian:bookworm-slim when Docker has it, or
# a local debootstrap import (orchestration/sim.py); the runtime layer comes
# before kong-sim's binary, so every Kong version shares it.
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG KONG_SIM_IMAGE

FROM ${KONG_SIM_IMAGE} AS sim

FROM ${DEBIAN_IMAGE}
COPY install-runtime.sh /tmp/install-runtime.sh
# A `kong` user owning the prefix, as in Kong's images (the plugin images switch to it).
RUN sh /tmp/install-runtime.sh python js \
 && rm /tmp/install-runtime.sh \
 && ln -s /usr/bin/node /usr/local/bin/node \
 && useradd --system --user-group --no-create-home --shell /bin/sh kong \
 && mkdir -p /usr/local/kong \
 && chown kong:kong /usr/local/kong
ARG KONG_VERSION
COPY --from=sim /usr/local/bin/kong /usr/local/bin/kong
LABEL io.kong-plugin-matrix.simulator="kong-sim" \
      io.kong-plugin-matrix.kong-version="${KONG_VERSION}" \
      org.opencontainers.image.title="kong-sim (Debian, python3 and node)" \
      org.opencontainers.image.description="kong-plugin-matrix simulator of Kong Gateway ${KONG_VERSION} (offline stand-in, not Kong)"
ENV KONG_SIM_VERSION=${KONG_VERSION}
USER kong
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=10s --retries=10 CMD ["kong", "health"]
CMD ["kong", "docker-start"]
