# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fieldctl_global_optspecs
    string join \n hub= hub-file= ca-file= proxy= json no-color h/help V/version
end

function __fish_fieldctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fieldctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fieldctl_using_subcommand
    set -l cmd (__fish_fieldctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fieldctl -n "__fish_fieldctl_needs_command" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_needs_command" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_needs_command" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_needs_command" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_needs_command" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -s V -l version -d 'Print version'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -f -a "job" -d 'Schedule, watch, list and cancel jobs'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -f -a "invoke" -d 'Invoke a direct method on one device'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -f -a "twin" -d 'Show or change a device twin'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -f -a "devices" -d 'List devices, or provision them from the gateway\'s device map'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -f -a "dps" -d 'Enrollment groups, individual enrollments and registrations of a Device Provisioning Service'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c fieldctl -n "__fish_fieldctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -f -a "method" -d 'Schedule a direct method call on every device a query matches'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -f -a "twin" -d 'Schedule a twin update (desired properties and/or tags) on every device a query matches'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -f -a "show" -d 'Show a job: status, device statistics and failed devices'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -f -a "list" -d 'List jobs'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -f -a "cancel" -d 'Cancel a scheduled or running job'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -f -a "devices" -d 'Show each device\'s result in a job'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and not __fish_seen_subcommand_from method twin show list cancel devices help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l method -d 'The method to call on each device' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l payload -d 'The method\'s payload: JSON, or @FILE holding JSON' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l response-timeout -d 'How long the hub waits for each device\'s answer (5s–300s)' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l connect-timeout -d 'How long the hub waits for an offline device to connect (0s–300s)' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l query -d 'Which devices: the WHERE condition of a device query, e.g. "tags.building = \'43\'"' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l start -d 'When the job starts: now, an RFC 3339 time, or +DURATION (+10m)' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l max-time -d 'How long the hub may spend on the job' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l id -d 'Job id [default: fieldctl-UUID]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l wait-timeout -d 'Give up waiting after this long [default: until the job\'s start plus its maximum time, plus a minute]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l poll-interval -d 'How often to ask the hub for progress' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l ack-timeout -d 'After a twin job: how long to wait for the doors to acknowledge the desired values (reported `ac`/`av`); a door that refused or did not answer in time counts as failed' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l wait -d 'Wait for the job to end, with live progress; exit 1 if any device failed'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from method" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l desired -d 'Desired properties to set: KEY=VALUE …; VALUE is JSON if it parses, else a string; a.b=1 nests' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l tag -d 'Tags to set: KEY=VALUE …, as for --desired' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l patch -d 'A twin patch {"tags":…,"properties":{"desired":…}}: JSON or @FILE; --desired/--tag apply on top' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l query -d 'Which devices: the WHERE condition of a device query, e.g. "tags.building = \'43\'"' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l start -d 'When the job starts: now, an RFC 3339 time, or +DURATION (+10m)' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l max-time -d 'How long the hub may spend on the job' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l id -d 'Job id [default: fieldctl-UUID]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l wait-timeout -d 'Give up waiting after this long [default: until the job\'s start plus its maximum time, plus a minute]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l poll-interval -d 'How often to ask the hub for progress' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l ack-timeout -d 'After a twin job: how long to wait for the doors to acknowledge the desired values (reported `ac`/`av`); a door that refused or did not answer in time counts as failed' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l wait -d 'Wait for the job to end, with live progress; exit 1 if any device failed'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from twin" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l wait-timeout -d 'Give up waiting after this long [default: until the job\'s start plus its maximum time, plus a minute]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l poll-interval -d 'How often to ask the hub for progress' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l ack-timeout -d 'After a twin job: how long to wait for the doors to acknowledge the desired values (reported `ac`/`av`); a door that refused or did not answer in time counts as failed' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l watch -d 'Follow the job until it ends, with live progress'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -l type -d 'Only jobs of this type' -r -f -a "method\t'scheduleDeviceMethod'
twin\t'scheduleUpdateTwin'"
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -l status -d 'Only jobs in this status' -r -f -a "queued\t''
scheduled\t''
running\t''
completed\t''
failed\t''
cancelled\t''"
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from devices" -l status -d 'Only devices in this status' -r -f -a "pending\t''
scheduled\t''
running\t''
completed\t''
failed\t''
canceled\t''"
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from devices" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from devices" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from devices" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from devices" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from devices" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from devices" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from devices" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "method" -d 'Schedule a direct method call on every device a query matches'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "twin" -d 'Schedule a twin update (desired properties and/or tags) on every device a query matches'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a job: status, device statistics and failed devices'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "list" -d 'List jobs'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Cancel a scheduled or running job'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "devices" -d 'Show each device\'s result in a job'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l payload -d 'The method\'s payload: JSON, or @FILE holding JSON' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l timeout -d 'How long the hub waits for the device\'s answer (5s–300s)' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l connect-timeout -d 'How long the hub waits for the device to connect if it is offline (0s–300s)' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand invoke" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -f -a "show" -d 'Show a device\'s twin: tags, desired and reported properties'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -f -a "set" -d 'Change a device\'s tags and/or desired properties (merged into the twin)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and not __fish_seen_subcommand_from show set help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from show" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from show" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from show" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from show" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from show" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from show" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l desired -d 'Desired properties to set: KEY=VALUE …; VALUE is JSON if it parses, else a string; null deletes' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l tag -d 'Tags to set: KEY=VALUE …, as for --desired' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l ack-timeout -d 'How long --wait waits for the acknowledgement' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l wait -d 'Wait for the door to acknowledge each desired value (reported `ac`/`av`); exit 1 if it refuses one or does not answer within --ack-timeout'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a device\'s twin: tags, desired and reported properties'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from help" -f -a "set" -d 'Change a device\'s tags and/or desired properties (merged into the twin)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand twin; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -f -a "list" -d 'List devices (all, or those a query matches)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -f -a "provision" -d 'Create the device identities of a gateway device map, set their tags, save their keys'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and not __fish_seen_subcommand_from list provision help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from list" -l query -d 'A WHERE condition ("tags.building = \'43\'") or a whole SELECT … FROM devices query' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from list" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from list" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from list" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from list" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from list" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l config -d 'The gateway\'s device map (fieldgate.toml)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l keys-dir -d 'Write each device\'s primary key (base64) to DIR/DEVICE-ID.key, mode 0600' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l dry-run -d 'Show what would change without changing anything'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from provision" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from help" -f -a "list" -d 'List devices (all, or those a query matches)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from help" -f -a "provision" -d 'Create the device identities of a gateway device map, set their tags, save their keys'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand devices; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -f -a "group" -d 'Create, list, show and delete enrollment groups (symmetric key or X.509)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -f -a "enrollment" -d 'Create, list, show and delete individual enrollments (one device, its own key)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -f -a "registration" -d 'Show one device\'s registration: status, assigned hub, device id, error'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -f -a "registrations" -d 'List the registrations made through an enrollment group (all pages)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and not __fish_seen_subcommand_from group enrollment registration registrations help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -f -a "create" -d 'Create (or replace) a symmetric-key enrollment group; the service generates its keys'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -f -a "list" -d 'List enrollment groups (all pages; never their keys)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -f -a "show" -d 'Show one enrollment group (never its keys)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -f -a "delete" -d 'Delete an enrollment group (its registered devices stay in the hub)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from group" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -f -a "create" -d 'Create a symmetric-key individual enrollment; the service generates its keys'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -f -a "list" -d 'List individual enrollments (all pages; never their keys)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -f -a "show" -d 'Show one individual enrollment (never its keys)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -f -a "delete" -d 'Delete an individual enrollment (its device stays in the hub)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from enrollment" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registration" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registration" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registration" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registration" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registration" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registration" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registration" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registrations" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registrations" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registrations" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registrations" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registrations" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registrations" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from registrations" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from help" -f -a "group" -d 'Create, list, show and delete enrollment groups (symmetric key or X.509)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from help" -f -a "enrollment" -d 'Create, list, show and delete individual enrollments (one device, its own key)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from help" -f -a "registration" -d 'Show one device\'s registration: status, assigned hub, device id, error'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from help" -f -a "registrations" -d 'List the registrations made through an enrollment group (all pages)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand dps; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand completions" -l hub -d 'Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand completions" -l hub-file -d 'File holding the service connection string' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand completions" -l ca-file -d 'Also trust the CA certificates in this PEM file (e.g. fieldhub\'s)' -r -F
complete -c fieldctl -n "__fish_fieldctl_using_subcommand completions" -l proxy -d 'HTTP proxy for the hub\'s service API, http://[USER:PASSWORD@]HOST[:PORT] [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]' -r
complete -c fieldctl -n "__fish_fieldctl_using_subcommand completions" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand completions" -l no-color -d 'Never use colour (NO_COLOR is honoured too)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and not __fish_seen_subcommand_from job invoke twin devices dps completions help" -f -a "job" -d 'Schedule, watch, list and cancel jobs'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and not __fish_seen_subcommand_from job invoke twin devices dps completions help" -f -a "invoke" -d 'Invoke a direct method on one device'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and not __fish_seen_subcommand_from job invoke twin devices dps completions help" -f -a "twin" -d 'Show or change a device twin'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and not __fish_seen_subcommand_from job invoke twin devices dps completions help" -f -a "devices" -d 'List devices, or provision them from the gateway\'s device map'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and not __fish_seen_subcommand_from job invoke twin devices dps completions help" -f -a "dps" -d 'Enrollment groups, individual enrollments and registrations of a Device Provisioning Service'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and not __fish_seen_subcommand_from job invoke twin devices dps completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and not __fish_seen_subcommand_from job invoke twin devices dps completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "method" -d 'Schedule a direct method call on every device a query matches'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "twin" -d 'Schedule a twin update (desired properties and/or tags) on every device a query matches'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "show" -d 'Show a job: status, device statistics and failed devices'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "list" -d 'List jobs'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "cancel" -d 'Cancel a scheduled or running job'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "devices" -d 'Show each device\'s result in a job'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from twin" -f -a "show" -d 'Show a device\'s twin: tags, desired and reported properties'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from twin" -f -a "set" -d 'Change a device\'s tags and/or desired properties (merged into the twin)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from devices" -f -a "list" -d 'List devices (all, or those a query matches)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from devices" -f -a "provision" -d 'Create the device identities of a gateway device map, set their tags, save their keys'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from dps" -f -a "group" -d 'Create, list, show and delete enrollment groups (symmetric key or X.509)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from dps" -f -a "enrollment" -d 'Create, list, show and delete individual enrollments (one device, its own key)'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from dps" -f -a "registration" -d 'Show one device\'s registration: status, assigned hub, device id, error'
complete -c fieldctl -n "__fish_fieldctl_using_subcommand help; and __fish_seen_subcommand_from dps" -f -a "registrations" -d 'List the registrations made through an enrollment group (all pages)'
