#!/bin/sh
# test_man.sh - the man pages and the CLI agree. From docs/cli.md (their one source):
#  - tools/gen_man.sh generates every page, and groff renders each with no warning (-ww);
#  - every verb the built CLI lists in `patchcore --help` has a page patchcore-VERB(1), named in
#    patchcore(1)'s VERBS;
#  - for those verbs, every --flag of `patchcore VERB --help` is documented in the page's OPTIONS, and
#    every flag the OPTIONS list is in --help (pages of verbs not built yet are not checked this way).
# Environment (set by CTest): PC_SOURCE_DIR, PC_CLI.
set -eu
src=${PC_SOURCE_DIR:?}
cli=${PC_CLI:?}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

sh "$src/tools/gen_man.sh" "$src/docs/cli.md" "$tmp/man" 0.0.0 || fail "gen_man.sh failed"
n=$(ls "$tmp/man"/*.1 | wc -l)
[ "$n" -ge 2 ] || fail "only $n pages generated"
if command -v groff >/dev/null 2>&1; then
    for page in "$tmp/man"/*.1; do
        warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || fail "groff failed on $(basename "$page")"
        [ -z "$warn" ] || fail "groff warns on $(basename "$page"): $warn"
    done
else
    echo "note: groff absent, rendering not checked"
fi

# OPTIONS items of a page in docs/cli.md: the flags named in its "- `...`:" lines.
page_flags() {
    awk -v page="# $1(1) - " '
        index($0, page) == 1 { on = 1; next }
        /^# / { on = 0 }
        on && /^## / { opts = ($0 == "## OPTIONS") }
        on && opts && /^- [`*]/ { print }' "$src/docs/cli.md" |
        sed 's/: .*//' | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u
}

verbs=$("$cli" --help | awk '/^verbs:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { exit }')
[ -n "$verbs" ] || fail "cannot read the verb list from $cli --help"
checked=0
for verb in $verbs; do
    [ "$verb" = version ] && continue
    grep -q "^# patchcore-$verb(1) - " "$src/docs/cli.md" || fail "verb '$verb' has no page in docs/cli.md"
    [ -f "$tmp/man/patchcore-$verb.1" ] || fail "patchcore-$verb.1 not generated"
    grep -q "^- \`patchcore-$verb(1)\`" "$src/docs/cli.md" || fail "patchcore(1) VERBS does not list $verb"
    help=$("$cli" "$verb" --help | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u)
    documented=$(page_flags "patchcore-$verb")
    for flag in $help; do
        echo "$documented" | grep -qx -- "$flag" || fail "patchcore $verb --help lists $flag, its man page does not"
    done
    for flag in $documented; do
        echo "$help" | grep -qx -- "$flag" || fail "the man page of $verb documents $flag, patchcore $verb --help does not"
    done
    checked=$((checked + 1))
done
echo "man OK: $n pages, $checked built verbs checked flag by flag"
