#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The offsets of src/profile/pyruntime.c's layout table, read from a libpython built with debug information:
#   scripts/py-layouts.sh /path/to/libpython3.X.so.1.0
# prints FIELD=OFFSET lines (FIELD named as in struct py_layout; "none" when that version has no such field; of
# alternatives, the first the version has: 3.11's frame_owner is is_entry).
# Needs gdb. tests/unit/test_py_layouts.py compares them with the table.
set -euo pipefail
L=${1:?usage: py-layouts.sh LIBPYTHON}
command -v gdb >/dev/null || { echo "py-layouts.sh: gdb missing (apt-get install gdb)" >&2; exit 1; }
fields=(
	"runtime_interpreters_head=((struct pyruntimestate*)0)->interpreters.head"
	"interp_threads_head=((struct _is*)0)->threads.head|((struct _is*)0)->tstate_head"
	"tstate_next=((struct _ts*)0)->next"
	"tstate_thread_id=((struct _ts*)0)->thread_id"
	"tstate_cframe=((struct _ts*)0)->cframe@3.11+"
	"cframe_current_frame=((_PyCFrame*)0)->current_frame"
	"tstate_frame=((struct _ts*)0)->frame|((struct _ts*)0)->current_frame"
	"frame_code=((struct _frame*)0)->f_code@3.10|((struct _PyInterpreterFrame*)0)->f_code|((struct _PyInterpreterFrame*)0)->f_executable"
	"frame_previous=((struct _frame*)0)->f_back@3.10|((struct _PyInterpreterFrame*)0)->previous"
	"frame_instr=((struct _frame*)0)->f_lasti@3.10|((struct _PyInterpreterFrame*)0)->prev_instr|((struct _PyInterpreterFrame*)0)->instr_ptr"
	"frame_owner=((struct _PyInterpreterFrame*)0)->is_entry|((struct _PyInterpreterFrame*)0)->owner"
	"code_name=((PyCodeObject*)0)->co_name"
	"code_qualname=((PyCodeObject*)0)->co_qualname"
	"code_filename=((PyCodeObject*)0)->co_filename"
	"code_firstlineno=((PyCodeObject*)0)->co_firstlineno"
	"code_linetable=((PyCodeObject*)0)->co_linetable"
	"code_adaptive=((PyCodeObject*)0)->co_code_adaptive"
	"unicode_state=((PyASCIIObject*)0)->state"
)
ver=$(basename "$L" | sed -n 's/.*python\(3\.[0-9]*\).*/\1/p')
args=(-batch -ex 'set max-value-size unlimited')
for f in "${fields[@]}"; do
	name=${f%%=*}
	alts=${f#*=}
	IFS='|' read -ra cand <<<"$alts"
	for c in "${cand[@]}"; do
		expr=${c%@*}
		# "@3.10": only for that version; "@3.11+": from that version on (3.10's cframe is not the frames' way)
		if [[ $c == *@* ]]; then
			want=${c#*@}
			if [[ $want == *+ ]]; then
				[[ $(printf '%s\n%s\n' "${want%+}" "$ver" | sort -V | head -1) == "${want%+}" ]] || continue
			else
				[[ $ver == "$want" ]] || continue
			fi
		fi
		args+=(-ex "printf \"$name=\"" -ex "output (long)&($expr)" -ex 'printf "\n"')
	done
done
args+=(-ex 'printf "unicode_ascii_data=%ld\n", (long)sizeof(PyASCIIObject)')
args+=(-ex 'printf "unicode_compact_data=%ld\n", (long)sizeof(PyCompactUnicodeObject)')
gdb "${args[@]}" "$L" 2>&1 | awk -F= '/^[a-z_]+=/ { if ($2 ~ /^[0-9]+$/) { if (!($1 in v) || v[$1] == "none") v[$1] = $2 } else if (!($1 in v)) { v[$1] = "none" } }
	END { for (k in v) print k "=" v[k] }' | sort
