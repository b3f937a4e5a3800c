# Sourced by the scripts: `interpreter VERSION` prints the path of that CPython (3.11 from the
# system, 3.13 built once by scripts/cpython313.sh).
interpreter() {
    case $1 in
    3.11) command -v python3.11 || command -v python3 ;;
    3.13) bash scripts/cpython313.sh ;;
    *) echo "no recipe for Python $1" >&2 && return 1 ;;
    esac
}
