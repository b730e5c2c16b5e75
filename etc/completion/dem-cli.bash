# bash completion for dem-cli(8), the command line over dem's REST API.
# Install as /usr/share/bash-completion/completions/dem-cli (or source it from ~/.bashrc).
#
# Verbs and objects are static; target, host and group aliases, subsystem NQNs, port IDs and
# token IDs are asked of dem itself (dem-cli list/get, 2 s at most), with the -s, -p, -t and
# --token-file options already on the command line.

_dem_cli_verbs="list add set get delete rename link unlink edit refresh reconfigure usage config shutdown logpage"

# The objects a verb takes (nothing for config and shutdown).
_dem_cli_objects() {
    case $1 in
        list) echo "group target host token" ;;
        add) echo "group target subsystem host token" ;;
        set) echo "group target local inband outofband refresh subsystem portid acl ns host" ;;
        get) echo "group target host" ;;
        delete) echo "group target subsystem portid acl ns host token" ;;
        rename) echo "group target subsystem host" ;;
        link | unlink) echo "target host" ;;
        edit) echo "subsystem portid host" ;;
        refresh | reconfigure | usage) echo "target" ;;
        logpage) echo "target host" ;;
    esac
}

# The full verb for an abbreviation (first three letters or more).
_dem_cli_verb() {
    local v
    [[ ${#1} -ge 3 ]] || return
    for v in $_dem_cli_verbs; do
        [[ $v == "$1"* ]] && { echo "$v"; return; }
    done
}

# The full object for an abbreviation (its first letter; tok… is token).
_dem_cli_object() {
    case $1 in
        tok*) echo token ;;
        g*) echo group ;; t*) echo target ;; h*) echo host ;; s*) echo subsystem ;;
        p*) echo portid ;; a*) echo acl ;; n*) echo ns ;; l*) echo local ;;
        i*) echo inband ;; o*) echo outofband ;; r*) echo refresh ;;
    esac
}

# What argument number $3 (from 0) of "verb object" is.
_dem_cli_argument_kind() {
    local verb=$1 object=$2 n=$3
    case $object in
        group)
            [[ $n -eq 0 && $verb =~ ^(get|delete|rename)$ ]] && echo group ;;
        target)
            case $verb in
                link | unlink) [[ $n -eq 0 ]] && echo target; [[ $n -eq 1 ]] && echo group ;;
                add | set) ;;
                *) [[ $n -eq 0 || ($verb == delete) ]] && echo target ;;
            esac ;;
        host)
            case $verb in
                link | unlink) [[ $n -eq 0 ]] && echo host; [[ $n -eq 1 ]] && echo group ;;
                add | set) ;;
                *) [[ $n -eq 0 || ($verb == delete) ]] && echo host ;;
            esac ;;
        local | refresh) [[ $n -eq 0 ]] && echo target ;;
        inband)
            case $n in 0) echo target ;; 1) echo trtype ;; 2) echo adrfam ;; esac ;;
        outofband)
            case $n in 0) echo target ;; 1) echo family ;; esac ;;
        subsystem)
            case $n in
                0) echo target ;;
                1) [[ $verb != add && $verb != set ]] && echo subsystem ;;
                2) [[ $verb == set || $verb == edit ]] && echo allowany; [[ $verb == delete ]] && echo subsystem ;;
                *) [[ $verb == delete ]] && echo subsystem ;;
            esac ;;
        portid)
            case $n in
                0) echo target ;;
                1) [[ $verb != set ]] && echo portid ;;
                2) [[ $verb == delete ]] && echo portid || echo trtype ;;
                3) [[ $verb == delete ]] && echo portid || echo adrfam ;;
                *) [[ $verb == delete ]] && echo portid ;;
            esac ;;
        acl)
            case $n in 0) echo target ;; 1) echo subsystem ;; *) echo host ;; esac ;;
        ns)
            case $n in 0) echo target ;; 1) echo subsystem ;; 3) [[ $verb == set ]] && echo device ;; esac ;;
        token)
            [[ $verb == delete ]] && echo tokenid
            [[ $verb == add && $n -eq 1 ]] && echo role ;;
    esac
}

_dem_cli() {
    # Split the line up to the cursor on white space ourselves: COMP_WORDS would also split the
    # NQNs at their ':'.
    local line=${COMP_LINE:0:COMP_POINT} cur="" prev
    local -a words
    read -r -a words <<<"$line"
    if [[ $line == *[[:space:]] || ${#words[@]} -le 1 ]]; then
        words+=("")
    fi
    cur=${words[-1]}
    prev=${words[-2]-}
    local -a options=() positional=()
    local i word

    case $prev in
        -s | --server) COMPREPLY=($(compgen -A hostname -- "$cur")); return ;;
        -p | --port | -t | --token) return ;;
        --token-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    if [[ $cur == -* && ! $cur =~ ^-[0-9]+$ ]]; then
        COMPREPLY=($(compgen -W "-s --server -p --port -j --json -r --raw -f --force -t --token --token-file -h --help --version" -- "$cur"))
        return
    fi

    # The words before the cursor, options (with their values) set apart.
    for ((i = 1; i < ${#words[@]} - 1; i++)); do
        word=${words[i]}
        case $word in
            -s | --server | -p | --port | -t | --token | --token-file)
                options+=("$word" "${words[i + 1]}"); ((i++)) ;;
            --server=* | --port=* | --token=* | --token-file=*) options+=("$word") ;;
            -[0-9]*) positional+=("$word") ;;
            -*) ;;
            *) positional+=("$word") ;;
        esac
    done

    local n=${#positional[@]} verb object kind
    if [[ $n -eq 0 ]]; then
        COMPREPLY=($(compgen -W "$_dem_cli_verbs" -- "$cur"))
        return
    fi
    verb=$(_dem_cli_verb "${positional[0]}")
    [[ -n $verb ]] || return
    if [[ $n -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$(_dem_cli_objects "$verb")" -- "$cur"))
        return
    fi
    object=$(_dem_cli_object "${positional[1]}")
    kind=$(_dem_cli_argument_kind "$verb" "$object" $((n - 2)))

    local -a query=(timeout 2 dem-cli "${options[@]}")
    command -v timeout >/dev/null || query=(dem-cli "${options[@]}")
    local candidates=""
    case $kind in
        target | host | group) candidates=$("${query[@]}" list "$kind" 2>/dev/null) ;;
        subsystem)
            candidates=$("${query[@]}" -j get target "${positional[2]}" 2>/dev/null |
                sed -n 's/.*"SUBNQN": *"\([^"]*\)".*/\1/p') ;;
        portid)
            candidates=$("${query[@]}" -j get target "${positional[2]}" 2>/dev/null |
                sed -n 's/.*"PORTID": *"\{0,1\}\([0-9]*\).*/\1/p') ;;
        tokenid)
            candidates=$("${query[@]}" -j list token 2>/dev/null | sed -n 's/.*"ID": *"\{0,1\}\([^",]*\).*/\1/p') ;;
        trtype) candidates="tcp rdma fc loop" ;;
        adrfam) candidates="ipv4 ipv6 ib fc" ;;
        family) candidates="ipv4 ipv6" ;;
        allowany) candidates="1 0" ;;
        role) candidates="read admin" ;;
        device) candidates="nullb0" ;;
    esac
    [[ -n $candidates ]] || return
    COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
    # NQNs contain ':', which bash treats as a word break by default: complete only what follows
    # the last ':'.
    if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
        local prefix=${cur%"${cur##*:}"}
        local j
        for j in "${!COMPREPLY[@]}"; do COMPREPLY[j]=${COMPREPLY[j]#"$prefix"}; done
    fi
}

complete -F _dem_cli dem-cli
