# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fieldgate_global_optspecs
    string join \n log= log-json h/help V/version
end

function __fish_fieldgate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fieldgate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fieldgate_using_subcommand
    set -l cmd (__fish_fieldgate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fieldgate -n "__fish_fieldgate_needs_command" -l log -d 'Log filter (tracing EnvFilter syntax), e.g. `info` or `fieldgate=debug`. RUST_LOG wins. [default: info; warn for `demo`, whose own output tells the story]' -r
complete -c fieldgate -n "__fish_fieldgate_needs_command" -l log-json -d 'Log as JSON lines (for journald/log shippers) instead of text'
complete -c fieldgate -n "__fish_fieldgate_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fieldgate -n "__fish_fieldgate_needs_command" -s V -l version -d 'Print version'
complete -c fieldgate -n "__fish_fieldgate_needs_command" -f -a "run" -d 'Serve the doors of a device map until SIGTERM/Ctrl-C; SIGHUP reloads the map'
complete -c fieldgate -n "__fish_fieldgate_needs_command" -f -a "check" -d 'Validate a device map and report every error with file:line:column; exit 1 if invalid'
complete -c fieldgate -n "__fish_fieldgate_needs_command" -f -a "model" -d 'Write a profile\'s Plug and Play model: a DTDL v2 interface (methods as commands, desired points as writable properties, reported points as properties, telemetry points as telemetry)'
complete -c fieldgate -n "__fish_fieldgate_needs_command" -f -a "demo" -d 'Run the whole system offline: a local hub, simulated doors, the gateway, and the seed jobs'
complete -c fieldgate -n "__fish_fieldgate_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c fieldgate -n "__fish_fieldgate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand run" -s c -l config -d 'The device map (TOML)' -r -F
complete -c fieldgate -n "__fish_fieldgate_using_subcommand run" -l worker-threads -d 'Runtime threads. One (the default) is plenty for a thousand doors, wakes the CPU least and keeps memory lowest (docs/BENCHMARKS.md, workloads 3 and 4)' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand run" -l log -d 'Log filter (tracing EnvFilter syntax), e.g. `info` or `fieldgate=debug`. RUST_LOG wins. [default: info; warn for `demo`, whose own output tells the story]' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand run" -l log-json -d 'Log as JSON lines (for journald/log shippers) instead of text'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand run" -s h -l help -d 'Print help'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand check" -s c -l config -r -F
complete -c fieldgate -n "__fish_fieldgate_using_subcommand check" -l log -d 'Log filter (tracing EnvFilter syntax), e.g. `info` or `fieldgate=debug`. RUST_LOG wins. [default: info; warn for `demo`, whose own output tells the story]' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand check" -l log-json -d 'Log as JSON lines (for journald/log shippers) instead of text'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand check" -s h -l help -d 'Print help'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand model" -s c -l config -r -F
complete -c fieldgate -n "__fish_fieldgate_using_subcommand model" -l profile -d 'The profile ([profile.NAME]) to describe' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand model" -s o -l out -d 'Write the interface here instead of to stdout' -r -F
complete -c fieldgate -n "__fish_fieldgate_using_subcommand model" -l log -d 'Log filter (tracing EnvFilter syntax), e.g. `info` or `fieldgate=debug`. RUST_LOG wins. [default: info; warn for `demo`, whose own output tells the story]' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand model" -l log-json -d 'Log as JSON lines (for journald/log shippers) instead of text'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand model" -s h -l help -d 'Print help'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand demo" -l tcp-doors -d 'Door controllers on the Modbus TCP bus' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand demo" -l rtu-doors -d 'Door controllers on the RTU line' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand demo" -l log -d 'Log filter (tracing EnvFilter syntax), e.g. `info` or `fieldgate=debug`. RUST_LOG wins. [default: info; warn for `demo`, whose own output tells the story]' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand demo" -l exit -d 'Run the seed jobs once, print the outcome and exit (0 when both jobs succeeded on every door): for tests and CI'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand demo" -l log-json -d 'Log as JSON lines (for journald/log shippers) instead of text'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand demo" -s h -l help -d 'Print help'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand completions" -l log -d 'Log filter (tracing EnvFilter syntax), e.g. `info` or `fieldgate=debug`. RUST_LOG wins. [default: info; warn for `demo`, whose own output tells the story]' -r
complete -c fieldgate -n "__fish_fieldgate_using_subcommand completions" -l log-json -d 'Log as JSON lines (for journald/log shippers) instead of text'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand completions" -s h -l help -d 'Print help'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand help; and not __fish_seen_subcommand_from run check model demo completions help" -f -a "run" -d 'Serve the doors of a device map until SIGTERM/Ctrl-C; SIGHUP reloads the map'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand help; and not __fish_seen_subcommand_from run check model demo completions help" -f -a "check" -d 'Validate a device map and report every error with file:line:column; exit 1 if invalid'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand help; and not __fish_seen_subcommand_from run check model demo completions help" -f -a "model" -d 'Write a profile\'s Plug and Play model: a DTDL v2 interface (methods as commands, desired points as writable properties, reported points as properties, telemetry points as telemetry)'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand help; and not __fish_seen_subcommand_from run check model demo completions help" -f -a "demo" -d 'Run the whole system offline: a local hub, simulated doors, the gateway, and the seed jobs'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand help; and not __fish_seen_subcommand_from run check model demo completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c fieldgate -n "__fish_fieldgate_using_subcommand help; and not __fish_seen_subcommand_from run check model demo completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
