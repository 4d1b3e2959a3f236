# Sourced by the scripts that need a Debian package (postgres.sh, libfaketime.sh, pgbouncer.sh):
#   apt_install PACKAGE...   installs them non-interactively, as root or through sudo, with
#                            apt's output on stderr (stdout is the calling script's answer).
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}
