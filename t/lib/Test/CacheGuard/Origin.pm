package Test::CacheGuard::Origin;

# The test origin as seen from a test: start/stop of t/lib/origin.pl (one
# per test file, a child of the test process) and the helpers that talk to
# its control API.  See t/lib/origin.pl for the behaviour of the server.

use strict;
use warnings;

use Exporter qw(import);
use POSIX ();

use Test::CacheGuard::HTTP qw(http_get);
use Test::CacheGuard::Util qw(
    repo_root wait_until port_accepts process_alive
);

our @EXPORT_OK = qw(
    origin_start origin_stop
    origin_count origin_total origin_reset origin_peak origin_inflight
    origin_log origin_set origin_clear origin_last_request
);

my $START_TIMEOUT = 10;
my $STOP_TIMEOUT  = 10;

my $origin_pid;

sub origin_port { return $ENV{TEST_NGINX_ORIGIN_PORT} }

# Start the origin unless this process already did; wait until it accepts.
sub origin_start {
    return 1 if $origin_pid && process_alive($origin_pid);
    my $port = origin_port();
    die "127.0.0.1:$port is already in use (a stale origin? set "
      . "TEST_NGINX_ORIGIN_PORT)\n" if port_accepts($port);
    my $script = repo_root() . '/t/lib/origin.pl';
    my $parent = $$;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', \*STDERR;    # never write into the TAP stream
        exec($^X, $script, '--port', $port, '--quiet',
             '--parent-pid', $parent) or POSIX::_exit(127);
    }
    $origin_pid = $pid;
    my $exited = 0;
    my $up = wait_until(sub {
        $exited = waitpid($pid, POSIX::WNOHANG()) == $pid;
        return $exited || port_accepts($port);
    }, $START_TIMEOUT);
    return 1 if $up && !$exited;
    undef $origin_pid if $exited;
    origin_stop();
    die "cannot start the test origin on port $port: "
      . ($exited ? "origin.pl exited with status $?"
                 : "not accepting after ${START_TIMEOUT}s") . "\n";
}

sub origin_stop {
    my $pid = $origin_pid or return;
    undef $origin_pid;
    kill 'TERM', $pid;
    return if wait_until(sub { waitpid($pid, POSIX::WNOHANG()) == $pid },
        $STOP_TIMEOUT);
    kill 'KILL', $pid;
    waitpid $pid, 0;
    return;
}

sub _url_encode {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9\-._~\/])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

# GET /_origin/<what>?<args> and return the body.
sub _control {
    my ($what, @args) = @_;
    origin_start();
    my @pairs;
    while (my ($name, $value) = splice @args, 0, 2) {
        push @pairs, map { _url_encode($name) . '=' . _url_encode($_) }
            ref $value eq 'ARRAY' ? @$value : $value;
    }
    my $target = "/_origin/$what" . (@pairs ? '?' . join('&', @pairs) : '');
    my $res = http_get($target, port => origin_port());
    return $res->{body} if $res->{status} == 200;
    return undef if $res->{status} == 404 && $what eq 'last';
    die "origin control $target failed: "
      . ($res->{error} // "status $res->{status}: $res->{body}") . "\n";
}

sub _number { my $text = _control(@_); return 0 + $text }

sub origin_count    { return _number('count', path => $_[0]) }
sub origin_total    { return _number('total') }
sub origin_peak     { return _number('peak') }
sub origin_inflight { return _number('inflight') }
sub origin_reset    { _control('reset'); return 1 }
sub origin_clear    { _control('clear', path => $_[0]); return 1 }

# origin_set($path, status => 500, delay => 2, hdr => ['A:1', 'B:2'], ...)
sub origin_set {
    my ($path, %behaviour) = @_;
    _control('set', path => $path, %behaviour);
    return 1;
}

# List of { time => epoch (float), method => 'GET', target => '/a?x=1' }.
sub origin_log {
    my $text = _control('log');
    return map {
        my ($time, $method, $target) = split / /, $_, 3;
        { time => 0 + $time, method => $method, target => $target };
    } split /\n/, $text;
}

# The last request received for $path, or undef:
# { method, target, version, headers => { lowercased => value }, body }.
sub origin_last_request {
    my ($path) = @_;
    my $text = _control('last', path => $path) // return undef;
    my ($head, $body) = split /\r\n\r\n/, $text, 2;
    my ($line, @lines) = split /\r\n/, $head;
    my ($method, $target, $version) = split ' ', $line;
    my %headers;
    for (@lines) {
        my ($name, $value) = /^([^:]+):\s*(.*)$/ or next;
        my $key = lc $name;
        $headers{$key} = exists $headers{$key} ? "$headers{$key}, $value"
                                               : $value;
    }
    return { method => $method, target => $target, version => $version,
             headers => \%headers, body => $body };
}

1;
