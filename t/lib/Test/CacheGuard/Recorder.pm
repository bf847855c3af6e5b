package Test::CacheGuard::Recorder;

# The recording listener (t/lib/recorder.pl) as seen from a test: it
# accepts TCP connections on a port and keeps every byte it receives, so a
# test can show that nothing in clear (a RESP command: "*1\r\n$4\r\nPING",
# "GET") reached a port that should only see TLS.  Several may run at
# once, one per port; each is a child of the test and stopped at exit.
#
#   recorder_port($n)    $TEST_NGINX_RECORDER_PORT (6430 by default) + $n
#   recorder_start(%opt) start one with empty files, return once the port
#                    listens (checked through /proc: no connection made);
#                    returns its pid.  %opt: port (default
#                    recorder_port(0)), mode: silent (default; accepts and
#                    never answers), close (closes at once), or
#                    close-after-read
#   recorder_stop($port)     SIGKILL and reap it
#   recorder_stop_all()
#   recorder_bytes($port)    every byte received so far, as one string
#   recorder_events($port)   event lines: "CONNECT 1", "READ 1 517",
#                    "CLOSE 1 peer 517"
#   recorder_connections($port)  how many connections it accepted
#   resp_in_clear($bytes)    true if $bytes hold a RESP command array in
#                    clear ("*N\r\n$L\r\n") or an inline PING/GET/SET/AUTH/
#                    HELLO/SELECT/EVALSHA word at a line start
#   tls_client_hello($bytes) true if $bytes start with a TLS handshake
#                    record holding a ClientHello (16 03 0x .. .. 01)
#
# Files: t/servroot-recorder/recorder-PORT.{bytes,events,pid,log}.

use strict;
use warnings;

use Exporter qw(import);
use File::Path qw(make_path);

use Test::CacheGuard::Util qw(repo_root wait_until port_listening slurp);
use Test::CacheGuard::Spawn qw(spawn reap_kill exited port_free
                               stop_listener);

our @EXPORT = qw(
    recorder_port recorder_start recorder_stop recorder_stop_all
    recorder_bytes recorder_events recorder_connections resp_in_clear
    tls_client_hello
);

$ENV{TEST_NGINX_RECORDER_PORT} = 6430
    unless defined $ENV{TEST_NGINX_RECORDER_PORT}
           && length $ENV{TEST_NGINX_RECORDER_PORT};

my $START_TIMEOUT = 10;

my %recorders;    # port => pid

sub recorder_port {
    my ($n) = @_;
    return $ENV{TEST_NGINX_RECORDER_PORT} + ($n // 0);
}

sub _file {
    my ($port, $ext) = @_;
    return repo_root() . "/t/servroot-recorder/recorder-$port.$ext";
}

sub recorder_start {
    my (%opt) = @_;
    my $port = $opt{port} // recorder_port(0);
    my $mode = $opt{mode} // 'silent';
    recorder_stop($port);
    die "127.0.0.1:$port is in use (set TEST_NGINX_RECORDER_PORT)\n"
        if port_listening($port);
    make_path(repo_root() . '/t/servroot-recorder');
    my @files = map { _file($port, $_) } qw(bytes events pid);
    unlink @files;
    my $pid = spawn([$^X, repo_root() . '/t/lib/recorder.pl', $port, $mode,
                     @files, '--parent-pid', $$],
                    log => _file($port, 'log'));
    $recorders{$port} = $pid;
    my $up = wait_until(sub {
        die "recorder.pl exited\n" if exited($pid);
        return -s $files[2] && port_listening($port);
    }, $START_TIMEOUT);
    return $pid if $up;
    my $why = $@ || "not listening after ${START_TIMEOUT}s";
    recorder_stop($port);
    die "cannot start the recorder on port $port: $why";
}

sub recorder_stop {
    my ($port) = @_;
    my $pid = delete $recorders{$port} or return 1;
    return stop_listener($pid, $port, 'recorder');
}

sub recorder_stop_all {
    recorder_stop($_) for sort keys %recorders;
    return 1;
}

sub recorder_bytes {
    my ($port) = @_;
    my $file = _file($port // recorder_port(0), 'bytes');
    return -e $file ? slurp($file) : '';
}

sub recorder_events {
    my ($port) = @_;
    open my $fh, '<', _file($port // recorder_port(0), 'events') or return ();
    my @lines = <$fh>;
    pop @lines if @lines && $lines[-1] !~ /\n\z/;    # still being written
    chomp @lines;
    return @lines;
}

sub recorder_connections {
    my ($port) = @_;
    return scalar grep { /^CONNECT / } recorder_events($port);
}

sub resp_in_clear {
    my ($bytes) = @_;
    return 1 if $bytes =~ /\*\d+\r\n\$\d+\r\n/;
    return 1
        if $bytes =~ /(?:\A|\n)(?:PING|GET|SET|AUTH|HELLO|SELECT|EVALSHA)\b/i;
    return 0;
}

sub tls_client_hello {
    my ($bytes) = @_;
    return 0 if length $bytes < 6;
    my ($type, $major, $minor, undef, $hs) = unpack 'C C C n C', $bytes;
    return $type == 0x16 && $major == 3 && $minor <= 4 && $hs == 1;
}

END {
    local $?;
    eval { recorder_stop_all() };
}

1;
