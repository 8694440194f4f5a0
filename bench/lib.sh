# Shared by the bench scripts (sourced).

# in_cgroup DIR COMMAND...: run COMMAND inside the cgroup DIR, as the agents' units would be
in_cgroup() {
  local dir=$1; shift
  sh -c 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"' "$dir" _ "$@"
}

# median of the numbers on stdin (space or newline separated)
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

now() { date +%s.%N; }
