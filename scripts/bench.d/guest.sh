#!/usr/bin/env bash
# Guest side of scripts/bench: runs in a kernel with GRE (the scripts/vm guest,
# or the host when it has GRE). Measures gre-hook, the seed-style shell script
# and the ip -batch/iptables-restore floor for each N, each in a fresh network
# namespace, and writes tab-separated results to OUT/results.tsv:
#   KIND N up_ms down_ms        (KIND: grehook base shell floor; base is the
#                               gre-hook built from BENCH_BASE_REV, OUT/gre-hook-base)
#   procs N up_execs down_execs (processes gre-hook started)
# and, when OUT/realkernel.test exists and BENCH_WATCH_SECONDS > 0, the
# watcher's footprint (TestWatchFootprint, whose peer reflects keepalives
# with plain ip tunnels), BENCH_WATCH_RUNS times (default 5) to
# OUT/watch.new.K.txt and, alternating, for the base binary every other
# run to OUT/watch.base.K.txt, each with its WATCH-BENCH line.
#
#   guest.sh BIN OUT N...          driver
#   guest.sh --inner KIND N DIR    (internal: runs inside the namespace)
set -uo pipefail

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (b-a)/1000}'; }

# Checks run inside the namespace, untimed: the work really happened.
check_up() {
	local links rules routes
	links=$(ip -o link show type gre | grep -c ': t[0-9]*@')
	rules=$(iptables -t mangle -S | grep -c TCPMSS)
	routes=$(ip route show root 172.16.0.0/12 | grep -c via)
	if [[ $links -ne $1 || $rules -ne $1 || $routes -ne $1 ]]; then
		echo "check after up (N=$1): $links links, $rules TCPMSS rules, $routes routes" >&2
		return 1
	fi
}
check_down() {
	local links rules
	links=$(ip -o link show type gre | grep -c ': t[0-9]*@')
	rules=$(iptables -t mangle -S | grep -c TCPMSS)
	if [[ $links -ne 0 || $rules -ne 0 ]]; then
		echo "check after down: $links links, $rules TCPMSS rules left" >&2
		return 1
	fi
}
if [[ ${1:-} == --inner ]]; then
	kind=$2 n=$3 dir=$4
	case $kind in
	grehook | base)
		export GRE_HOOK_INSECURE_CONFIG=1 GRE_HOOK_STATE_DIR=$dir/state
		b=$BIN
		[[ $kind == base ]] && b=$BASE_BIN
		t0=${EPOCHREALTIME/./}; "$b" --config "$dir/gre-hook.toml" --iface eth1 --phase up >"$dir/up.log" 2>&1 || { echo "gre-hook up failed:" >&2; cat "$dir/up.log" >&2; exit 1; }
		t1=${EPOCHREALTIME/./}
		check_up "$n" || exit 1
		t2=${EPOCHREALTIME/./}; "$b" --config "$dir/gre-hook.toml" --iface eth1 --phase down >"$dir/down.log" 2>&1 || { echo "gre-hook down failed:" >&2; cat "$dir/down.log" >&2; exit 1; }
		t3=${EPOCHREALTIME/./} ;;
	shell)
		t0=${EPOCHREALTIME/./}; bash -e "$dir/shell-up.sh" || exit 1; t1=${EPOCHREALTIME/./}
		check_up "$n" || exit 1
		t2=${EPOCHREALTIME/./}; bash -e "$dir/shell-down.sh" || exit 1; t3=${EPOCHREALTIME/./} ;;
	floor)
		t0=${EPOCHREALTIME/./}; ip -batch "$dir/ip-up.batch" && iptables-restore --noflush <"$dir/ipt-up.rules" || exit 1; t1=${EPOCHREALTIME/./}
		check_up "$n" || exit 1
		t2=${EPOCHREALTIME/./}; iptables-restore --noflush <"$dir/ipt-down.rules" && ip -batch "$dir/ip-down.batch" || exit 1; t3=${EPOCHREALTIME/./} ;;
	procs)
		export GRE_HOOK_INSECURE_CONFIG=1 GRE_HOOK_STATE_DIR=$dir/state
		strace -f -qq -e trace=execve -o "$dir/strace.up" "$BIN" --config "$dir/gre-hook.toml" --iface eth1 --phase up >/dev/null 2>&1 || exit 1
		strace -f -qq -e trace=execve -o "$dir/strace.down" "$BIN" --config "$dir/gre-hook.toml" --iface eth1 --phase down >/dev/null 2>&1 || exit 1
		# successful execve calls, minus gre-hook's own
		u=$(grep 'execve(' "$dir/strace.up" | grep -vc '= -1')
		d=$(grep 'execve(' "$dir/strace.down" | grep -vc '= -1')
		echo "procs	$n	$((u - 1))	$((d - 1))"
		cp "$dir/strace.up" "$OUT/strace.$n.up"; cp "$dir/strace.down" "$OUT/strace.$n.down"
		exit 0 ;;
	esac
	check_down || exit 1
	echo "$kind	$n	$(ms "$t0" "$t1")	$(ms "$t2" "$t3")"
	exit 0
fi

if [[ ${1:-} == --gen ]]; then
	GEN=1
	shift
else
	BIN=$(readlink -f "$1") OUT=$2 self=$(readlink -f "$0")
	shift 2
	BASE_BIN=$OUT/gre-hook-base
	export BIN BASE_BIN
	# Inputs are generated on the host by --gen (forks are slow under TCG),
	# then copied to the guest's tmpfs so that no run works over 9p.
	work=$(mktemp -d /tmp/gre-hook-bench.XXXXXX)
	cp -r "$OUT/work/." "$work/"
fi

# Tunnel i: name t<i>, remote 203.0.a.b, address 10.a.b.1/30 (peer .2),
# route 172.(16+x).y.0/24 via the peer. Local 198.51.100.1 on eth1.
gen() { # gen N DIR
	local n=$1 d=$2 i r a p pfx
	mkdir -p "$d"
	local l1= l2= l3= l4= toml= su= sd= iu='*mangle'$'\n' id='*mangle'$'\n' mss
	for ((i = 0; i < n; i++)); do
		r=203.0.$((i / 250)).$((i % 250 + 1))
		a=10.$((i / 64)).$((i % 64 * 4)).1/30
		p=10.$((i / 64)).$((i % 64 * 4)).2
		pfx=172.$((16 + i / 256)).$((i % 256)).0/24
		toml+="[[tunnel]]
name = \"t$i\"
underlay = \"eth1\"
mode = \"gre\"
local = \"198.51.100.1\"
remote = \"$r\"
ttl = 255
multicast = true
address = [\"$a\"]
mss = \"pmtu\"
[[tunnel.route]]
to = \"$pfx\"
via = \"$p\"

"
		mss="-p tcp --tcp-flags SYN,RST SYN -o t$i -j TCPMSS --clamp-mss-to-pmtu"
		su+="ip tunnel add t$i mode gre remote $r local 198.51.100.1 ttl 255
ip link set t$i up
ip link set t$i multicast on
ip addr add $a broadcast + dev t$i
iptables -t mangle -A POSTROUTING $mss
ip route add $pfx via $p
"
		sd+="iptables -t mangle -D POSTROUTING $mss
ip link set t$i down
ip tunnel del t$i
"
		l1+="tunnel add t$i mode gre remote $r local 198.51.100.1 ttl 255"$'\n'
		l2+="link set t$i up multicast on"$'\n'"addr add $a broadcast + dev t$i"$'\n'
		l3+="route add $pfx via $p"$'\n'
		l4+="link del t$i"$'\n'
		iu+="-A POSTROUTING $mss"$'\n'
		id+="-D POSTROUTING $mss"$'\n'
	done
	printf '%s' "$toml" >"$d/gre-hook.toml"
	printf '%s' "$su" >"$d/shell-up.sh"
	printf '%s' "$sd" >"$d/shell-down.sh"
	printf '%s%s%s' "$l1" "$l2" "$l3" >"$d/ip-up.batch"
	printf '%s' "$l4" >"$d/ip-down.batch"
	printf '%sCOMMIT\n' "$iu" >"$d/ipt-up.rules"
	printf '%sCOMMIT\n' "$id" >"$d/ipt-down.rules"
}
if [[ ${GEN:-} == 1 ]]; then # guest.sh --gen DIR N...: write the inputs for each N
	dir=$1
	shift
	for n in 1 "$@"; do gen "$n" "$dir/n$n"; done
	exit 0
fi


modules=(ip_gre gre ip_tunnel dummy nf_tables nft_compat x_tables xt_TCPMSS xt_tcpudp xt_comment)
load_modules() { # only the missing ones: every exec is slow under TCG
	local m
	for m in "${modules[@]}"; do [[ -d /sys/module/$m ]] || modprobe -q "$m" 2>/dev/null || true; done
}
load_modules
command -v strace >/dev/null || { apt-get install -y --no-install-recommends strace >/dev/null 2>&1 || echo "warning: strace missing and not installable" >&2; }

seq=0
fresh_ns() { # prints the name of a fresh namespace with eth1 up
	local ns=bench$((seq++))
	ip netns del "$ns" 2>/dev/null
	ip netns add "$ns" || return 1
	ip -n "$ns" link set lo up
	ip -n "$ns" link add eth1 type dummy
	ip -n "$ns" addr add 198.51.100.1/16 dev eth1
	ip -n "$ns" link set eth1 up
	ip -n "$ns" route add default via 198.51.100.254 dev eth1
	echo "$ns"
}

# run KIND N: one measurement in a fresh namespace (modules loaded first)
run() {
	local kind=$1 n=$2 ns rc d=$work/n$2
	load_modules
	rm -rf "$d/state"
	ns=$(fresh_ns) || return 1
	OUT=$OUT ip netns exec "$ns" bash "$self" --inner "$kind" "$n" "$d" >>"$OUT/results.tsv"
	rc=$?
	ip netns del "$ns"
	[[ $rc -eq 0 ]] || echo "bench: $kind N=$n failed" >&2
	return $rc
}

: >"$OUT/results.tsv"
uname -r >"$OUT/kernel"
# warm-up (discarded): page caches, lazily loaded modules, first iptables-nft table
base=
[[ -x $BASE_BIN ]] && base=base
for k in grehook $base shell floor; do OUT=$work run "$k" 1 >/dev/null 2>&1; done
: >"$work/results.tsv"

for n in "$@"; do
	reps=${BENCH_REPS:-3}
	((n >= 1000)) && reps=1
	kinds=(grehook $base floor shell)
	# The shell script costs ~6 processes per tunnel: past BENCH_SHELL_MAX
	# tunnels it is not run (the host reports a linear extrapolation, marked).
	((n > ${BENCH_SHELL_MAX:-100})) && kinds=(grehook $base floor)
	for ((k = 0; k < reps; k++)); do
		for kind in "${kinds[@]}"; do
			# The shell script runs once: minutes per run, and its margin
			# is wide. gre-hook and the floor alternate, so that a slow
			# spell of the host hits both.
			[[ $kind == shell ]] && ((k > 0)) && continue
			s=$(now_us)
			run "$kind" "$n"
			echo "  $kind N=$n rep $((k + 1))/$reps: $(ms "$s" "$(now_us)") ms wall (incl. setup/checks)" >&2
		done
	done
	run procs "$n"
done

if [[ -x $OUT/realkernel.test && ${BENCH_WATCH_SECONDS:-20} -gt 0 ]]; then
	runs=${BENCH_WATCH_RUNS:-5}
	# watch NAME BIN K [BASE]: one TestWatchFootprint run of BIN to
	# OUT/watch.NAME.K.txt; BASE set for the binary from before this tree,
	# which the test does not hold to this tree's checks.
	watch() {
		local s rc f=$OUT/watch.$1.$3.txt
		s=$(now_us)
		(cd "$(dirname "$self")/../../hook/realkernel" &&
			GRE_HOOK_BIN=$2 GRE_HOOK_WATCH_BENCH_BASE=${4:-} GRE_HOOK_WATCH_BENCH_SECONDS=${BENCH_WATCH_SECONDS:-20} \
				"$OUT/realkernel.test" -test.run '^TestWatchFootprint$' -test.count=1 -test.v -test.timeout 20m) >"$f" 2>&1
		rc=$?
		echo "  watch $1 run $3: $(grep WATCH-BENCH "$f" || echo 'no WATCH-BENCH line'), $(ms "$s" "$(now_us)") ms wall" >&2
		((rc == 0)) || { echo "bench: TestWatchFootprint of $2 failed (exit $rc):" >&2; tail -40 "$f" >&2; }
	}
	echo "  gre-hook watch footprint: $runs runs of two ${BENCH_WATCH_SECONDS:-20} s windows (TestWatchFootprint)${base:+, the base binary every other run}" >&2
	for ((k = 1; k <= runs; k++)); do
		watch new "$BIN" "$k"
		[[ -n $base ]] && ((k % 2 == 1)) && watch base "$BASE_BIN" "$k" 1
	done
fi
echo "guest done" >&2
