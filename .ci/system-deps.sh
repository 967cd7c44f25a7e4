#!/usr/bin/env bash
# System packages the tests need, installed through apt where we run as root and they are missing:
#   bubblewrap  the skill sandbox (tests of executable skills fail without it: fail closed)
#   chromium, chromium-driver  the browser test of `kb view` (headless; skipped with a reason
#               where they are missing)
#   postgresql  the tests that also run on PostgreSQL start a throwaway server from its binaries
#               (initdb, postgres; as an unprivileged user when run as root); skipped with a
#               reason where none can start
# Elsewhere it prints what to install and carries on.
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
[[ -x /usr/bin/chromium ]] || need+=(chromium)
[[ -x /usr/bin/chromedriver ]] || need+=(chromium-driver)
have_postgres() {
  command -v initdb >/dev/null 2>&1 && return 0
  [[ -x /usr/local/bin/initdb ]] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_postgres || need+=(postgresql)
if ((${#need[@]} == 0)); then
  exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  if ! { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    echo "could not install: ${need[*]} (the tests that need them fail or skip, saying why)" >&2
  fi
else
  echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
fi
