package Test::CacheGuard::Spawn;

# Child processes of a test (redis-server over TLS, sentinels, the
# recording listener): started with fork + exec, never daemonized, so that
# the test can reap them and `kill 0` on a stopped one fails (no zombie
# left behind, whoever pid 1 is).
#
#   spawn(\@cmd, log => FILE)  fork, exec @cmd with stdin from /dev/null
#                    and stdout + stderr appended to FILE (or to the
#                    test's stderr); returns the pid
#   reap_kill($pid, $timeout)  SIGKILL and reap it; true once it is gone
#                    (false if it survived $timeout seconds, 10 by default)
#   exited($pid)     true (and reaped) if the child has exited
#   port_free($port, $timeout)  wait until 127.0.0.1:$port refuses
#                    connections and nothing listens on it; true if so

use strict;
use warnings;

use Exporter qw(import);
use POSIX ();

use Test::CacheGuard::Util qw(wait_until port_accepts port_listening);

our @EXPORT_OK = qw(spawn reap_kill exited port_free stop_listener);

sub spawn {
    my ($cmd, %opt) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        if (defined $opt{log}) {
            open STDOUT, '>>', $opt{log} or POSIX::_exit(126);
        } else {
            open STDOUT, '>&', \*STDERR;    # never write into the TAP stream
        }
        open STDERR, '>&', \*STDOUT;
        exec { $cmd->[0] } @$cmd or POSIX::_exit(127);
    }
    return $pid;
}

sub exited {
    my ($pid) = @_;
    my $r = waitpid $pid, POSIX::WNOHANG();
    return $r == $pid || $r == -1;
}

sub reap_kill {
    my ($pid, $timeout) = @_;
    return 1 unless $pid;
    kill 'KILL', $pid;
    return wait_until(sub { exited($pid) }, $timeout // 10);
}

sub port_free {
    my ($port, $timeout) = @_;
    return wait_until(sub { !port_listening($port) && !port_accepts($port) },
        $timeout // 10);
}

# Kills the child $what (pid $pid) that listens on $port, reaps it and
# waits until the port refuses; dies if either does not happen in time.
sub stop_listener {
    my ($pid, $port, $what, $timeout) = @_;
    reap_kill($pid, $timeout)
        or die "$what (pid $pid) on port $port survived SIGKILL\n";
    port_free($port, $timeout)
        or die "port $port still accepts after its $what died\n";
    return 1;
}

1;
