#compdef dem-cli
# zsh completion for dem-cli(8), the command line over dem's REST API.
# Install as _dem-cli in a directory of $fpath (e.g. /usr/share/zsh/vendor-completions/_dem-cli).
#
# Verbs and objects are static; target, host and group aliases, subsystem NQNs, port IDs and
# token IDs are asked of dem itself (dem-cli list/get, 2 s at most), with the -s, -p, -t and
# --token-file options already on the command line.

# The full verb for an abbreviation (first three letters or more).
_dem_cli_verb() {
  local v
  (( ${#1} >= 3 )) || return
  for v in list add set get delete rename link unlink edit refresh reconfigure usage config shutdown logpage; do
    [[ $v == ${1}* ]] && { print -r -- $v; return }
  done
}

# The full object for an abbreviation (its first letter; tok… is token).
_dem_cli_object() {
  case $1 in
    tok*) print token ;;
    g*) print group ;; t*) print target ;; h*) print host ;; s*) print subsystem ;;
    p*) print portid ;; a*) print acl ;; n*) print ns ;; l*) print local ;;
    i*) print inband ;; o*) print outofband ;; r*) print refresh ;;
  esac
}

# What argument number $3 (from 0) of "verb object" is.
_dem_cli_argument_kind() {
  local verb=$1 object=$2 n=$3
  case $object in
    group) [[ $n -eq 0 && $verb == (get|delete|rename) ]] && print group ;;
    target|host)
      case $verb in
        link|unlink) (( n == 0 )) && print $object; (( n == 1 )) && print group ;;
        add|set) ;;
        *) [[ $n -eq 0 || $verb == delete ]] && print $object ;;
      esac ;;
    local|refresh) (( n == 0 )) && print target ;;
    inband) case $n in 0) print target ;; 1) print trtype ;; 2) print adrfam ;; esac ;;
    outofband) case $n in 0) print target ;; 1) print family ;; esac ;;
    subsystem)
      case $n in
        0) print target ;;
        1) [[ $verb != (add|set) ]] && print subsystem ;;
        2) [[ $verb == (set|edit) ]] && print allowany; [[ $verb == delete ]] && print subsystem ;;
        *) [[ $verb == delete ]] && print subsystem ;;
      esac ;;
    portid)
      case $n in
        0) print target ;;
        1) [[ $verb != set ]] && print portid ;;
        2) if [[ $verb == delete ]]; then print portid; else print trtype; fi ;;
        3) if [[ $verb == delete ]]; then print portid; else print adrfam; fi ;;
        *) [[ $verb == delete ]] && print portid ;;
      esac ;;
    acl) case $n in 0) print target ;; 1) print subsystem ;; *) print host ;; esac ;;
    ns) case $n in 0) print target ;; 1) print subsystem ;; 3) [[ $verb == set ]] && print device ;; esac ;;
    token)
      [[ $verb == delete ]] && print tokenid
      [[ $verb == add && $n -eq 1 ]] && print role ;;
  esac
}

_dem-cli() {
  local curcontext=$curcontext state line ret=1
  typeset -A opt_args

  _arguments -C -s -S \
    '(-s --server)'{-s+,--server=}'[dem REST address (default 127.0.0.1)]:host:_hosts' \
    '(-p --port)'{-p+,--port=}'[dem REST port (default 22345)]:port:' \
    '(-j --json -r --raw)'{-j,--json}"[print the server's JSON, indented]" \
    '(-j --json -r --raw)'{-r,--raw}'[print the body as received]' \
    '(-f --force)'{-f,--force}'[delete without asking]' \
    '(-t --token)'{-t+,--token=}'[API token to send]:token:' \
    '--token-file=[read the API token from a file]:file:_files' \
    '(- *)'{-h,--help}'[print the help]' \
    '(- *)--version[print the version]' \
    '*:: :->args' && ret=0

  [[ $state == args ]] || return ret

  # The words before the cursor, options (with their values) set apart.
  local -a options positional
  local i word
  for (( i = 1; i < CURRENT; i++ )); do
    word=$words[i]
    case $word in
      -s|--server|-p|--port|-t|--token|--token-file) options+=($word $words[i+1]); (( i++ )) ;;
      --server=*|--port=*|--token=*|--token-file=*) options+=($word) ;;
      -[0-9]*) positional+=($word) ;;
      -*) ;;
      *) positional+=($word) ;;
    esac
  done
  # Options _arguments consumed before the verb.
  for word in -s --server -p --port -t --token --token-file; do
    [[ -n ${opt_args[$word]-} ]] && options+=($word ${opt_args[$word]})
  done

  local -a verbs objects
  verbs=(
    'list:list groups, targets, hosts or tokens'
    'add:create a group, target, subsystem, host or token'
    'set:create or set something'
    'get:show a group, target or host'
    'delete:delete things'
    'rename:rename a group, target, subsystem or host'
    'link:put a target or host in a group'
    'unlink:take a target or host out of a group'
    'edit:change a subsystem, port or host'
    "refresh:fetch a target's log pages again"
    'reconfigure:push the configuration to a target again'
    "usage:a target's usage"
    "config:dem's discovery listeners"
    'shutdown:stop dem'
    'logpage:the discovery log page of a host or target'
  )
  if (( ${#positional} == 0 )); then
    _describe -t verbs 'dem-cli verb' verbs && ret=0
    return ret
  fi
  local verb=$(_dem_cli_verb $positional[1])
  [[ -n $verb ]] || return ret
  if (( ${#positional} == 1 )); then
    case $verb in
      list) objects=(group target host token) ;;
      add) objects=(group target subsystem host token) ;;
      set) objects=(group target local inband outofband refresh subsystem portid acl ns host) ;;
      get) objects=(group target host) ;;
      delete) objects=(group target subsystem portid acl ns host token) ;;
      rename) objects=(group target subsystem host) ;;
      link|unlink) objects=(target host) ;;
      edit) objects=(subsystem portid host) ;;
      refresh|reconfigure|usage) objects=(target) ;;
      logpage) objects=(target host) ;;
    esac
    (( ${#objects} )) && _wanted objects expl object compadd -a objects && ret=0
    return ret
  fi

  local object=$(_dem_cli_object $positional[2])
  local kind=$(_dem_cli_argument_kind $verb $object $(( ${#positional} - 2 )))
  local -a query candidates
  query=(dem-cli $options)
  (( $+commands[timeout] )) && query=(timeout 2 $query)
  case $kind in
    target|host|group) candidates=(${(f)"$($query list $kind 2>/dev/null)"}) ;;
    subsystem)
      candidates=(${(f)"$($query -j get target $positional[3] 2>/dev/null |
        sed -n 's/.*"SUBNQN": *"\([^"]*\)".*/\1/p')"}) ;;
    portid)
      candidates=(${(f)"$($query -j get target $positional[3] 2>/dev/null |
        sed -n 's/.*"PORTID": *"\{0,1\}\([0-9]*\).*/\1/p')"}) ;;
    tokenid)
      candidates=(${(f)"$($query -j list token 2>/dev/null | sed -n 's/.*"ID": *"\{0,1\}\([^",]*\).*/\1/p')"}) ;;
    trtype) candidates=(tcp rdma fc loop) ;;
    adrfam) candidates=(ipv4 ipv6 ib fc) ;;
    family) candidates=(ipv4 ipv6) ;;
    allowany) candidates=(1 0) ;;
    role) candidates=(read admin) ;;
    device) candidates=(nullb0) ;;
  esac
  (( ${#candidates} )) && _wanted $kind expl $kind compadd -a candidates && ret=0
  return ret
}

_dem-cli "$@"
