# shellcheck shell=bash
# Sourced, not run: reads a board file (boards/*.toml, format in boards/README.md) into
# the associative array B, checks every key, and renders what the firmware drop holds
# from it: the default agent.toml and the init script / systemd unit templates of
# firmware/. Shared by scripts/build.sh and scripts/firmware-check.sh.
#
#   source scripts/board.sh
#   board_load BOARD REPO_ROOT   # BOARD: a name in boards/ or a file; sets B, BOARD_FILE
#   board_config                 # prints the generated agent.toml
#   board_render TEMPLATE        # prints TEMPLATE with its @KEY@ placeholders filled
#
# Plain bash (grep/sed-level parsing) on purpose: the board files are flat
# `key = "value"` lines so that no TOML parser is needed on a build machine.

declare -gA B=()
BOARD_FILE=""

# Every key, and whether it may be empty ("" = required and non-empty).
BOARD_KEYS=(name description target qemu qemu_cpu max_bytes transports init binary config phone_app_unit
    keyring state_dir control_socket features_file supervisor_socket interface log server
    enabled_features)
BOARD_OPTIONAL=(qemu qemu_cpu max_bytes phone_app_unit server enabled_features)

board_err() { printf 'board: %s: %s\n' "${BOARD_FILE:-?}" "$*" >&2; }

# The board names in boards/, on one line.
board_names() {
    local f names=()
    for f in "$1"/boards/*.toml; do names+=("$(basename "$f" .toml)"); done
    printf '%s\n' "${names[*]}"
}

board_load() {
    local arg=$1 repo_root=$2 line n=0 key value k ok=0 path_re='^/[A-Za-z0-9._/+-]+$'
    B=()
    if [[ -f $arg ]]; then
        BOARD_FILE=$(realpath "$arg")
    else
        BOARD_FILE=$repo_root/boards/$arg.toml
        if [[ ! -f $BOARD_FILE ]]; then
            board_err "no such board (boards: $(board_names "$repo_root"))"
            return 1
        fi
    fi
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if [[ ! $line =~ ^([a-z_][a-z0-9_]*)[[:space:]]*=[[:space:]]*\"([^\"\\]*)\"[[:space:]]*(#.*)?$ ]]; then
            board_err "line $n: expected key = \"value\" (a double-quoted string without \" or \\), found: $line"
            return 1
        fi
        key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
        if [[ ! " ${BOARD_KEYS[*]} " == *" $key "* ]]; then
            board_err "line $n: unknown key $key (keys: ${BOARD_KEYS[*]})"
            return 1
        fi
        if [[ -n ${B[$key]+x} ]]; then
            board_err "line $n: $key given twice"
            return 1
        fi
        B[$key]=$value
    done <"$BOARD_FILE"

    for k in "${BOARD_KEYS[@]}"; do
        if [[ -z ${B[$k]+x} ]]; then
            if [[ " ${BOARD_OPTIONAL[*]} " == *" $k "* ]]; then B[$k]=""; else
                board_err "missing key $k"
                return 1
            fi
        elif [[ -z ${B[$k]} && ! " ${BOARD_OPTIONAL[*]} " == *" $k "* ]]; then
            board_err "$k must not be empty"
            return 1
        fi
    done
    [[ -n ${B[phone_app_unit]} ]] || B[phone_app_unit]=phone-app.service

    # The checks. Each failure names the key.
    [[ ${B[name]} == "$(basename "$BOARD_FILE" .toml)" ]] || {
        board_err "name = \"${B[name]}\" must be the file's name without .toml"
        return 1
    }
    case ${B[target]} in
        armv7-unknown-linux-gnueabihf | aarch64-unknown-linux-gnu)
            [[ -n ${B[qemu]} && -n ${B[qemu_cpu]} ]] || {
                board_err "an ARM target needs qemu and qemu_cpu"
                return 1
            }
            ;;
        x86_64-unknown-linux-gnu) ;;
        *)
            board_err "target ${B[target]}: armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-gnu or x86_64-unknown-linux-gnu"
            return 1
            ;;
    esac
    [[ -z ${B[max_bytes]} || ${B[max_bytes]} =~ ^[1-9][0-9]*$ ]] || {
        board_err "max_bytes must be a number of bytes or empty"
        return 1
    }
    # The transports the board ships: cargo features of the agent (http covers https).
    [[ ${B[transports]} =~ ^(http|ftp|tftp)(\ (http|ftp|tftp))*$ ]] || {
        board_err "transports: the transports the board ships, space-separated: http (also https), ftp (also ftps), tftp"
        return 1
    }
    for k in binary config keyring state_dir control_socket features_file; do
        [[ ${B[$k]} =~ $path_re ]] || {
            board_err "$k must be an absolute path of letters, digits and ._/+- (found \"${B[$k]}\")"
            return 1
        }
    done
    [[ ${B[supervisor_socket]} == none || ${B[supervisor_socket]} =~ $path_re ]] || {
        board_err "supervisor_socket must be an absolute path or \"none\""
        return 1
    }
    [[ ${B[interface]} =~ ^[A-Za-z0-9._-]{1,15}$ ]] || {
        board_err "interface must be a network interface name (1-15 characters, no /)"
        return 1
    }
    [[ ${B[enabled_features]} =~ ^[A-Za-z0-9\ _-]*$ ]] || {
        board_err "enabled_features: space-separated feature names, feature-XXXX or ids"
        return 1
    }
    [[ -z ${B[server]} || ${B[server]} =~ ^(https?://|ftps?://|tftp://|file:)[^[:space:]]+$ ]] || {
        board_err "server must be empty or an http://, https://, ftp://, ftps://, tftp:// or file: URL"
        return 1
    }
    [[ ${B[phone_app_unit]} =~ ^[A-Za-z0-9@._:-]+\.(service|target)$ ]] || {
        board_err "phone_app_unit must be a unit name (x.service or x.target)"
        return 1
    }
    case ${B[init]} in
        sysv) [[ ${B[log]} == syslog || ${B[log]} =~ $path_re ]] && ok=1 ;;
        systemd) [[ ${B[log]} == journal || ${B[log]} =~ $path_re ]] && ok=1 ;;
        *)
            board_err "init must be sysv or systemd"
            return 1
            ;;
    esac
    ((ok)) || {
        board_err "log for init ${B[init]}: $([[ ${B[init]} == sysv ]] && echo syslog || echo journal) or an absolute file path"
        return 1
    }
    if [[ ${B[init]} == systemd ]]; then
        for k in control_socket features_file; do
            [[ ${B[$k]} == /run/*/* ]] || {
                board_err "$k must be in a directory under /run/ for systemd's RuntimeDirectory="
                return 1
            }
        done
    fi
    return 0
}

# The generated /etc/license-agent/agent.toml of the board.
board_config() {
    local f list=""
    for f in ${B[enabled_features]}; do list+="${list:+, }\"$f\""; done
    cat <<EOF
# license-agent configuration for board ${B[name]} (${B[description]}).
# Generated by scripts/build.sh from boards/${B[name]}.toml. Every key is explained in
# /usr/share/doc/license-agent/agent.toml.example; relative paths are taken from this
# file's directory.

# The phone's MAC (binds its phone license) is read from this interface.
interface = "${B[interface]}"
# The site serial a site license must carry (optional: without it any site license
# that verifies is taken).
# site_serial = "100000000001"

# Trusted signing keys: on the read-only firmware partition, changed only by a firmware
# update. Accepted licenses and the latest trusted time: on a writable partition that
# survives a reboot.
keyring = "${B[keyring]}"
state_dir = "${B[state_dir]}"

EOF
    if [[ -n ${B[server]} ]]; then
        printf '# The provisioning server (base URL of <mac>-license.cfg and 000000000000-license.cfg).\nserver = "%s"\n' "${B[server]}"
    else
        # shellcheck disable=SC2016 # backquotes are Markdown-style quotes in the comment
        printf '# The provisioning server: set it per deployment; nothing is fetched without it (the\n# stored licenses and `license-agent install` still work). See [fetch] in the example\n# for a private CA, a client certificate or Basic authentication.\n# server = "https://prov.example.com/phones/"\n'
    fi
    cat <<EOF

# The licensable features this phone has enabled (polled for while not licensed).
enabled_features = [$list]

EOF
    if [[ ${B[supervisor_socket]} == none ]]; then
        printf '# No phone supervisor on this board: the reboots the agent would ask for are logged.\nsupervisor = "none"\n'
    else
        printf '# The phone supervisor (asked for reboots when the feature set must change).\nsupervisor_socket = "%s"\n' "${B[supervisor_socket]}"
    fi
    cat <<EOF

# Runtime files (a tmpfs): the control socket of \`license-agent status\` / \`check-sync\`,
# and the published feature set that the phone application reads.
control_socket = "${B[control_socket]}"
features_file = "${B[features_file]}"

# [timing]: the defaults of the agent rules apply (see the example).
EOF
}

# The lines that make state_dir writable under systemd.
board_state_lines() {
    local d=${B[state_dir]}
    if [[ $d == /var/lib/?* ]]; then
        printf 'StateDirectory=%s\nStateDirectoryMode=0700\n' "${d#/var/lib/}"
    else
        printf 'ReadWritePaths=%s\n# Not under /var/lib (no StateDirectory=): created before the sandbox is set up.\nExecStartPre=+/bin/mkdir -p -m 0700 %s\n' "$d" "$d"
    fi
}

board_render() {
    local template=$1 line out dirs="" d stderr=${B[log]} rest
    for d in "$(dirname "${B[control_socket]}")" "$(dirname "${B[features_file]}")"; do
        rest=${d#/run/}
        [[ " $dirs " == *" $rest "* ]] || dirs+="${dirs:+ }$rest"
    done
    [[ $stderr == journal ]] || stderr="append:$stderr"
    out=$(
        while IFS= read -r line || [[ -n $line ]]; do
            if [[ $line == "@STATE_LINES@" ]]; then
                board_state_lines
                continue
            fi
            line=${line//@BOARD@/${B[name]}}
            line=${line//@BINARY@/${B[binary]}}
            line=${line//@CONFIG@/${B[config]}}
            line=${line//@LOG@/${B[log]}}
            line=${line//@STATE_DIR@/${B[state_dir]}}
            line=${line//@FEATURES_FILE@/${B[features_file]}}
            line=${line//@PHONE_APP_UNIT@/${B[phone_app_unit]}}
            line=${line//@STANDARD_ERROR@/$stderr}
            line=${line//@RUNTIME_DIRECTORY@/$dirs}
            printf '%s\n' "$line"
        done <"$template"
    )
    if grep -q '@[A-Z_]*@' <<<"$out"; then
        board_err "$template: placeholders left: $(grep -o '@[A-Z_]*@' <<<"$out" | sort -u | tr '\n' ' ')"
        return 1
    fi
    printf '%s\n' "$out"
}
