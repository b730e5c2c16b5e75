// dem-cli's bash and zsh completions, generated from the command table and the option table:
// a command or option added there is completed without another list to keep.

/// A shell dem-cli writes a completion script for.
enum CompletionShell: String, CaseIterable, Sendable {
    case bash, zsh
}

/// What an argument of a command is, for completion: names asked of dem, or a fixed list.
enum ArgumentKind: String, CaseIterable, Sendable {
    case target, host, group, subsystem, portid, tokenid, trtype, adrfam, family, allowany, role, device

    /// The fixed candidates, nil for the kinds asked of dem.
    var fixedCandidates: [String]? {
        switch self {
        case .trtype: ["tcp", "rdma", "fc", "loop"]
        case .adrfam: ["ipv4", "ipv6", "ib", "fc"]
        case .family: ["ipv4", "ipv6"]
        case .allowany: ["1", "0"]
        case .role: ["read", "admin"]
        case .device: ["nullb0"]
        case .target, .host, .group, .subsystem, .portid, .tokenid: nil
        }
    }
}

extension CLIObject {
    /// The argument (from 0) that names the object itself (a new one, for add and set).
    var ownArgument: Int? {
        switch self {
        case .group, .target, .host: 0
        case .subsystem, .portid: 1
        default: nil
        }
    }
}

extension CommandSpec {
    /// Every argument's placeholder in order: the required ones, then the optional ones.
    var placeholders: [String] { arguments + optional }

    /// What argument `index` (from 0, after the object) is, nil when nothing is offered: a new
    /// name (what add and set create) or a free value. A repeated last argument keeps its kind.
    func completionKind(at index: Int) -> ArgumentKind? {
        let all = placeholders
        guard !all.isEmpty else { return nil }
        let position = index < all.count ? index : (repeatsLast && optional.isEmpty ? all.count - 1 : -1)
        guard position >= 0 else { return nil }
        if verb == .add || verb == .set, let object, object.ownArgument == position { return nil }
        let name = String(all[position].filter { !"<>[]".contains($0) })
        switch name {
        case "alias", "old": return object == .host ? .host : object == .group ? .group : .target
        case "name": return object == .group ? .group : nil
        case "group": return .group
        case "host": return .host
        case "subnqn": return .subsystem
        case "portid": return .portid
        case "id": return object == .token ? .tokenid : nil
        case "trtype": return .trtype
        case "adrfam": return .adrfam
        case "family": return .family
        case "allow_any": return .allowany
        case "admin|read": return .role
        case "devid|nullb0|/dev/path": return .device
        default: return nil
        }
    }
}

/// The completion scripts.
enum Completion {
    static func script(for shell: CompletionShell) -> String {
        switch shell {
        case .bash: bash
        case .zsh: zsh
        }
    }

    /// Each verb with the objects it takes, in table order.
    static var objectsByVerb: [(verb: Verb, objects: [CLIObject])] {
        Verb.allCases.map { verb in
            var objects: [CLIObject] = []
            for spec in CommandTable.commands where spec.verb == verb {
                if let object = spec.object, !objects.contains(object) { objects.append(object) }
            }
            return (verb, objects)
        }
    }

    /// `case` arms of "verb object n" to the argument's kind; a repeated last argument's arm
    /// matches any later n.
    static func kindArms(print: String, indent: String) -> [String] {
        var arms: [String] = []
        for spec in CommandTable.commands {
            guard let object = spec.object else { continue }
            let prefix = "\(spec.verb.rawValue) \(object.rawValue) "
            for index in spec.placeholders.indices {
                if let kind = spec.completionKind(at: index) {
                    arms.append("\(indent)\"\(prefix)\(index)\") \(print) \(kind.rawValue) ;;")
                }
            }
            if spec.repeatsLast, let kind = spec.completionKind(at: spec.placeholders.count) {
                arms.append("\(indent)\"\(prefix)\"*) \(print) \(kind.rawValue) ;;")
            }
        }
        return arms
    }

    /// `case` arms of an object word (lowercased) to its object, as ``CLIObject/match(_:)`` reads it.
    static func objectArms(print: String, indent: String) -> [String] {
        CLIObject.prefixed.map { "\(indent)\($0.prefix)*) \(print) \($0.object.rawValue) ;;" }
            + CLIObject.allCases.filter { object in !CLIObject.prefixed.contains { $0.object == object } }.map {
                "\(indent)\($0.rawValue.first!)*) \(print) \($0.rawValue) ;;"
            }
    }

    static var valueOptions: [String] {
        OptionName.allCases.filter { $0.valueName != nil }.flatMap(\.spellings)
    }

    static var fixedArms: [String] {
        ArgumentKind.allCases.compactMap { kind in
            kind.fixedCandidates.map { "\(kind.rawValue)) candidates=\"\($0.joined(separator: " "))\" ;;" }
        }
    }

    static var bash: String {
        let verbs = Verb.allCases.map(\.rawValue).joined(separator: " ")
        let verbObjectArms = objectsByVerb.filter { !$0.objects.isEmpty }.map {
            "        \($0.verb.rawValue)) echo \"\($0.objects.map(\.rawValue).joined(separator: " "))\" ;;"
        }
        let options = OptionName.allCases.flatMap(\.spellings).joined(separator: " ")
        let valueOptions = valueOptions.joined(separator: " | ")
        let inlineValueOptions = valueOptions.split(separator: " | ").filter { $0.hasPrefix("--") }
            .map { "\($0)=*" }.joined(separator: " | ")
        return """
            # bash completion for dem-cli(8), generated by dem-cli --generate-completion-script bash
            # from its command table. Install as /usr/share/bash-completion/completions/dem-cli.
            #
            # Verbs and objects are static; target, host and group aliases, subsystem NQNs, port IDs and
            # token IDs are asked of dem itself (dem-cli list/get, 2 s at most), with the -s, -p, -t,
            # --token-file and --cacert options already on the command line.

            _dem_cli_verbs="\(verbs)"

            # The objects a verb takes.
            _dem_cli_objects() {
                case $1 in
            \(verbObjectArms.joined(separator: "\n"))
                esac
            }

            # The full verb for an abbreviation (first three letters or more).
            _dem_cli_verb() {
                local v
                [[ ${#1} -ge 3 ]] || return
                for v in $_dem_cli_verbs; do
                    [[ $v == "${1,,}"* ]] && { echo "$v"; return; }
                done
            }

            # The full object for an abbreviation (its first letter; tok… is token, join… join-token).
            _dem_cli_object() {
                case ${1,,} in
            \(Self.objectArms(print: "echo", indent: "        ").joined(separator: "\n"))
                esac
            }

            # What argument number $3 (from 0) of "verb object" is.
            _dem_cli_argument_kind() {
                case "$1 $2 $3" in
            \(kindArms(print: "echo", indent: "        ").joined(separator: "\n"))
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
                    --token-file | --cacert) COMPREPLY=($(compgen -f -- "$cur")); return ;;
                    --generate-completion-script) COMPREPLY=($(compgen -W "\(CompletionShell.allCases.map(\.rawValue).joined(separator: " "))" -- "$cur")); return ;;
                    \(valueOptions)) return ;;
                esac
                if [[ $cur == -* && ! $cur =~ ^-[0-9]+$ ]]; then
                    COMPREPLY=($(compgen -W "\(options)" -- "$cur"))
                    return
                fi

                # The words before the cursor, options (with their values) set apart.
                for ((i = 1; i < ${#words[@]} - 1; i++)); do
                    word=${words[i]}
                    case $word in
                        \(valueOptions))
                            options+=("$word" "${words[i + 1]}"); ((i++)) ;;
                        \(inlineValueOptions)) options+=("$word") ;;
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
                    target)
                        candidates=$("${query[@]}" -j list target 2>/dev/null | sed -n 's/^ *"Alias": *"\\([^"]*\\)".*/\\1/p') ;;
                    host | group) candidates=$("${query[@]}" list "$kind" 2>/dev/null) ;;
                    subsystem)
                        candidates=$("${query[@]}" -j get target "${positional[2]}" 2>/dev/null |
                            sed -n 's/.*"SUBNQN": *"\\([^"]*\\)".*/\\1/p') ;;
                    portid)
                        candidates=$("${query[@]}" -j get target "${positional[2]}" 2>/dev/null |
                            sed -n 's/.*"PORTID": *"\\{0,1\\}\\([0-9]*\\).*/\\1/p') ;;
                    tokenid)
                        candidates=$("${query[@]}" -j list token 2>/dev/null | sed -n 's/.*"ID": *"\\{0,1\\}\\([^",]*\\).*/\\1/p') ;;
            \(fixedArms.map { "        " + $0 }.joined(separator: "\n"))
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

            """
    }

    static var zsh: String {
        let verbs = Verb.allCases.map(\.rawValue).joined(separator: " ")
        let verbDescriptions = objectsByVerb.map { verb, objects in
            let what =
                objects.isEmpty
                ? CommandTable.commands.first { $0.verb == verb }?.summary ?? verb.rawValue
                : objects.map(\.rawValue).joined(separator: ", ")
            return "    \(shellQuoted("\(verb.rawValue):\(what)"))"
        }
        let verbObjectArms = objectsByVerb.filter { !$0.objects.isEmpty }.map {
            "      \($0.verb.rawValue)) objects=(\($0.objects.map(\.rawValue).joined(separator: " "))) ;;"
        }
        let specs = OptionName.allCases.flatMap { option -> [String] in
            let exclusive: String
            switch option {
            case .json, .raw:
                exclusive = "(" + (OptionName.json.spellings + OptionName.raw.spellings).joined(separator: " ") + ")"
            case .help, .version, .completionScript: exclusive = "(- *)"
            default: exclusive = "(" + option.spellings.joined(separator: " ") + ")"
            }
            let action: String
            switch option {
            case .server: action = ":host:_hosts"
            case .tokenFile, .caCertificate: action = ":file:_files"
            case .completionScript:
                action = ":shell:(\(CompletionShell.allCases.map(\.rawValue).joined(separator: " ")))"
            default: action = option.valueName.map { ":\($0.lowercased()):" } ?? ""
            }
            let summary = option.summary.replacing("[", with: "\\[")
                .replacing("]", with: "\\]")
            return option.spellings.map { spelling in
                let form =
                    option.valueName == nil ? spelling : spelling.hasPrefix("--") ? spelling + "=" : spelling + "+"
                return "    " + shellQuoted("\(exclusive)\(form)[\(summary)]\(action)") + " \\"
            }
        }
        let valueOptions = valueOptions.joined(separator: "|")
        let inlineValueOptions = valueOptions.split(separator: "|").filter { $0.hasPrefix("--") }
            .map { "\($0)=*" }.joined(separator: "|")
        return """
            #compdef dem-cli
            # zsh completion for dem-cli(8), generated by dem-cli --generate-completion-script zsh from
            # its command table. Install as _dem-cli in a directory of $fpath.
            #
            # Verbs and objects are static; target, host and group aliases, subsystem NQNs, port IDs and
            # token IDs are asked of dem itself (dem-cli list/get, 2 s at most), with the -s, -p, -t,
            # --token-file and --cacert options already on the command line.

            # The full verb for an abbreviation (first three letters or more).
            _dem_cli_verb() {
              local v
              (( ${#1} >= 3 )) || return
              for v in \(verbs); do
                [[ $v == ${(L)1}* ]] && { print -r -- $v; return }
              done
            }

            # The full object for an abbreviation (its first letter; tok… is token, join… join-token).
            _dem_cli_object() {
              case ${(L)1} in
            \(Self.objectArms(print: "print", indent: "    ").joined(separator: "\n"))
              esac
            }

            # What argument number $3 (from 0) of "verb object" is.
            _dem_cli_argument_kind() {
              case "$1 $2 $3" in
            \(kindArms(print: "print", indent: "    ").joined(separator: "\n"))
              esac
            }

            _dem-cli() {
              local curcontext=$curcontext state line ret=1
              typeset -A opt_args

              _arguments -C -s -S \\
            \(specs.joined(separator: "\n"))
                '*:: :->args' && ret=0

              [[ $state == args ]] || return ret

              # The words before the cursor, options (with their values) set apart.
              local -a options positional
              local i word
              for (( i = 1; i < CURRENT; i++ )); do
                word=$words[i]
                case $word in
                  \(valueOptions)) options+=($word $words[i+1]); (( i++ )) ;;
                  \(inlineValueOptions)) options+=($word) ;;
                  -[0-9]*) positional+=($word) ;;
                  -*) ;;
                  *) positional+=($word) ;;
                esac
              done
              # Options _arguments consumed before the verb.
              for word in \(valueOptions.replacing("|", with: " ")); do
                [[ -n ${opt_args[$word]-} ]] && options+=($word ${opt_args[$word]})
              done

              local -a verbs objects
              verbs=(
            \(verbDescriptions.joined(separator: "\n"))
              )
              if (( ${#positional} == 0 )); then
                _describe -t verbs 'dem-cli verb' verbs && ret=0
                return ret
              fi
              local verb=$(_dem_cli_verb $positional[1])
              [[ -n $verb ]] || return ret
              if (( ${#positional} == 1 )); then
                case $verb in
            \(verbObjectArms.joined(separator: "\n"))
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
                target)
                  candidates=(${(f)"$($query -j list target 2>/dev/null | sed -n 's/^ *"Alias": *"\\([^"]*\\)".*/\\1/p')"}) ;;
                host|group) candidates=(${(f)"$($query list $kind 2>/dev/null)"}) ;;
                subsystem)
                  candidates=(${(f)"$($query -j get target $positional[3] 2>/dev/null |
                    sed -n 's/.*"SUBNQN": *"\\([^"]*\\)".*/\\1/p')"}) ;;
                portid)
                  candidates=(${(f)"$($query -j get target $positional[3] 2>/dev/null |
                    sed -n 's/.*"PORTID": *"\\{0,1\\}\\([0-9]*\\).*/\\1/p')"}) ;;
                tokenid)
                  candidates=(${(f)"$($query -j list token 2>/dev/null | sed -n 's/.*"ID": *"\\{0,1\\}\\([^",]*\\).*/\\1/p')"}) ;;
            \(ArgumentKind.allCases.compactMap { kind in kind.fixedCandidates.map { "    \(kind.rawValue)) candidates=(\($0.joined(separator: " "))) ;;" } }.joined(separator: "\n"))
              esac
              (( ${#candidates} )) && _wanted $kind expl $kind compadd -a candidates && ret=0
              return ret
            }

            _dem-cli "$@"

            """
    }

    /// `text` in single quotes for a shell.
    static func shellQuoted(_ text: String) -> String {
        "'" + text.replacing("'", with: "'\\''") + "'"
    }
}
