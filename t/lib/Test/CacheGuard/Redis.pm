package Test::CacheGuard::Redis;

# The test Redis: a small pure-Perl RESP client and the control of the
# redis-server process on 127.0.0.1:$TEST_NGINX_REDIS_PORT.  Used by
# Test::CacheGuard and by t/lib/redis-ctl (so that both start the server
# with the same settings).
#
#   redis(@args)     one command; reply decoded: simple and bulk strings as
#                    byte strings, nil as undef, integers as numbers, arrays
#                    as arrayrefs.  An error reply dies with
#                    "redis error: <message>\n"; an error nested inside an
#                    array (EXEC) is a Test::CacheGuard::Redis::Error object
#                    (->message, stringifies to the message).  Arguments are
#                    sent as bytes (binary safe); strings holding wide
#                    characters are sent UTF-8 encoded.  Commands share one
#                    connection, like a redis-cli session (SELECT and AUTH
#                    carry over); it is reopened after a timeout, an I/O
#                    error or a restart of the server.
#                    $Test::CacheGuard::Redis::TIMEOUT (5 s) bounds a call.
#   redis_disconnect()  close that connection (the next call opens a new
#                    session: db 0, not authenticated)
#   redis_flush()    FLUSHALL
#   redis_start()    start unless running (resumes a paused server), wait PING
#   redis_stop()     SIGKILL, wait until the port refuses connections
#   redis_pause()    SIGSTOP;  redis_resume(): SIGCONT
#   redis_running()  true when the server answers PING within a second
#   redis_pid()      pid from the pid file, if that process is alive
#   redis_at($port, @args)  one command to another server, 127.0.0.1:$port,
#                    on a connection of its own (closed after the reply);
#                    reply decoded as redis() does, an error reply dies
#                    the same way
#
# Files (redis-PORT.pid, redis-PORT.log; it is also the working dir) live
# in <repo>/t/servroot-redis/.

use strict;
use warnings;

use Exporter qw(import);
use File::Path qw(make_path);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

use Test::CacheGuard::Util qw(
    repo_root wait_until port_accepts process_alive process_state
);

our @EXPORT_OK = qw(
    redis redis_flush redis_start redis_stop redis_pause redis_resume
    redis_running redis_pid redis_dir redis_disconnect redis_at
);

our $TIMEOUT = 5;

# Generous bounds for a loaded machine.
my $START_TIMEOUT = 20;
my $STOP_TIMEOUT  = 20;

sub redis_port { return $ENV{TEST_NGINX_REDIS_PORT} }
sub redis_dir  { return repo_root() . '/t/servroot-redis' }

sub _encode_command {
    my @args = @_;
    my $out = '*' . scalar(@args) . "\r\n";
    for my $arg (@args) {
        my $bytes = defined $arg ? "$arg" : '';
        utf8::encode($bytes) if utf8::is_utf8($bytes);
        $out .= '$' . length($bytes) . "\r\n" . $bytes . "\r\n";
    }
    return $out;
}

# A buffered reader over the socket with an absolute deadline.
sub _fill {
    my ($conn) = @_;
    my $left = $conn->{deadline} - time;
    die "redis: timeout waiting for a reply\n"
        if $left <= 0 || !IO::Select->new($conn->{sock})->can_read($left);
    my $n = sysread $conn->{sock}, my $chunk, 65536;
    die "redis: read failed: $!\n" unless defined $n;
    die "redis: connection closed by the server\n" if $n == 0;
    $conn->{buf} .= $chunk;
    return;
}

sub _read_line {
    my ($conn) = @_;
    my $end;
    _fill($conn) while ($end = index $conn->{buf}, "\r\n") < 0;
    my $line = substr $conn->{buf}, 0, $end;
    substr($conn->{buf}, 0, $end + 2) = '';
    return $line;
}

sub _read_bytes {
    my ($conn, $n) = @_;
    _fill($conn) while length $conn->{buf} < $n;
    return substr $conn->{buf}, 0, $n, '';
}

sub _read_reply {
    my ($conn) = @_;
    my $line = _read_line($conn);
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $type eq '+';
    return Test::CacheGuard::Redis::Error->new($rest) if $type eq '-';
    return 0 + $rest if $type eq ':';
    if ($type eq '$') {
        return undef if $rest < 0;
        return substr _read_bytes($conn, $rest + 2), 0, $rest;
    }
    if ($type eq '*') {
        return undef if $rest < 0;
        return [map { _read_reply($conn) } 1 .. $rest];
    }
    die "redis: unexpected reply line '$line'\n";
}

sub _connect {
    my ($timeout, $port) = @_;
    $port //= redis_port();
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => $timeout,
    ) or die "redis: cannot connect to 127.0.0.1:$port: $@\n";
    return { sock => $sock, buf => '', port => $port };
}

# Send one command on $conn and return its reply (an error reply as a
# Test::CacheGuard::Redis::Error object).
sub _call {
    my ($conn, $timeout, @args) = @_;
    $conn->{deadline} = time + $timeout;
    my $request = _encode_command(@args);
    local $SIG{PIPE} = 'IGNORE';
    while (length $request) {
        my $n = syswrite $conn->{sock}, $request;
        die "redis: write failed: $!\n" unless defined $n;
        substr($request, 0, $n) = '';
    }
    return _read_reply($conn);
}

my $session;    # the connection redis() uses

sub redis_disconnect {
    close $session->{sock} if $session;
    undef $session;
    return;
}

sub redis {
    my @args = @_;
    die "redis: no command given\n" unless @args;
    # A session that the server closed (restart) or that has unexpected
    # bytes pending is useless: start a new one.
    redis_disconnect()
        if $session && ($session->{port} != redis_port()
            || IO::Select->new($session->{sock})->can_read(0));
    $session //= _connect($TIMEOUT);
    my $reply = eval { _call($session, $TIMEOUT, @args) };
    if (my $error = $@) {
        redis_disconnect();    # the stream may be out of step now
        die $error;
    }
    die "redis error: " . $reply->message . "\n"
        if ref $reply eq 'Test::CacheGuard::Redis::Error';
    return $reply;
}

sub redis_flush { return redis('FLUSHALL') }

sub redis_at {
    my ($port, @args) = @_;
    die "redis: no command given\n" unless @args;
    my $conn = _connect($TIMEOUT, $port);
    my $reply = eval { _call($conn, $TIMEOUT, @args) };
    my $error = $@;
    close $conn->{sock};
    die $error if $error;
    die "redis error: " . $reply->message . "\n"
        if ref $reply eq 'Test::CacheGuard::Redis::Error';
    return $reply;
}

# On a connection of its own; a server asking for a password (NOAUTH)
# does answer.
sub redis_running {
    my $reply = eval {
        my $conn = _connect(1);
        my $answer = _call($conn, 1, 'PING');
        close $conn->{sock};
        $answer;
    };
    return 0 unless defined $reply;
    return 1 if $reply eq 'PONG' || $reply =~ /^NOAUTH/;
    return 0;
}

# Named after the port, so that servers on several ports do not mix.
sub _pid_file { return redis_dir() . '/redis-' . redis_port() . '.pid' }
sub _log_file { return redis_dir() . '/redis-' . redis_port() . '.log' }

sub redis_pid {
    open my $fh, '<', _pid_file() or return undef;
    my $pid = <$fh>;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)/;
    return process_alive($1) ? $1 : undef;
}

sub redis_start {
    my $port = redis_port();
    redis_disconnect();
    if (my $pid = redis_pid()) {
        kill 'CONT', $pid if process_state($pid) eq 'T';
        return 1 if wait_until(\&redis_running, $START_TIMEOUT);
        die "redis-server (pid $pid) on port $port does not answer PING\n";
    }
    return 1 if redis_running();
    die "127.0.0.1:$port is in use by something that is not our redis "
      . "(set TEST_NGINX_REDIS_PORT)\n" if port_accepts($port);

    my $dir = redis_dir();
    make_path($dir);
    unlink _pid_file();
    my @cmd = (
        'redis-server',
        '--port',        $port,
        '--bind',        '127.0.0.1',
        '--save',        '',
        '--appendonly',  'no',
        '--daemonize',   'yes',
        '--pidfile',     _pid_file(),
        '--logfile',     _log_file(),
        '--dir',         $dir,
    );
    system(@cmd) == 0 or die "redis-server failed to start (exit $?): "
        . 'see ' . _log_file() . "\n";
    wait_until(sub { redis_running() && redis_pid() }, $START_TIMEOUT)
        or die "redis-server did not answer PING on port $port within "
             . "${START_TIMEOUT}s: see " . _log_file() . "\n";
    return 1;
}

sub redis_stop {
    my $port = redis_port();
    redis_disconnect();
    my $pid = redis_pid();
    if ($pid) {
        kill 'KILL', $pid;
    } elsif (redis_running()) {
        # Not started by us (no pid file): ask it to go away.
        eval { redis('SHUTDOWN', 'NOSAVE') };
    }
    wait_until(sub { !port_accepts($port) && !($pid && process_alive($pid)) },
        $STOP_TIMEOUT)
        or die "redis-server on port $port did not stop within "
             . "${STOP_TIMEOUT}s\n";
    unlink _pid_file();
    return 1;
}

sub redis_pause {
    my $pid = redis_pid() or die "redis_pause: redis-server is not running\n";
    kill 'STOP', $pid;
    return wait_until(sub { process_state($pid) eq 'T' }, $STOP_TIMEOUT);
}

sub redis_resume {
    my $pid = redis_pid() or die "redis_resume: redis-server is not running\n";
    kill 'CONT', $pid;
    return wait_until(sub { process_state($pid) ne 'T' }, $STOP_TIMEOUT);
}

package Test::CacheGuard::Redis::Error;

use overload '""' => sub { $_[0]->message }, fallback => 1;

sub new     { my ($class, $message) = @_; return bless { message => $message }, $class }
sub message { return $_[0]{message} }

1;
