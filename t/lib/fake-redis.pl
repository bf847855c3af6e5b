#!/usr/bin/perl
# A fake Redis for the tests: it speaks enough RESP to read the module's
# commands and answers them the way a broken, overloaded or hostile server
# would.  Single process, event driven (non-blocking sockets, one select
# loop), any number of clients; pipelined commands and commands split
# across reads are parsed as a real server would.
#
#   perl t/lib/fake-redis.pl PORT MODE LOG_FILE PID_FILE
#                            [--host 127.0.0.1] [--parent-pid PID]
#                            [--stream-bytes N]
#
# LOG_FILE gets one line per event, appended as it happens:
#   CONNECT <n>                    connection n accepted (1, 2, ...)
#   <COMMAND> <first argument>     a command received, e.g. "GET cg:/a"
#                                  (name upper-cased; bytes outside
#                                  0x21-0x7e written as \xNN)
#   CLOSE <n> <peer|server> <bytes sent on it>
#   SUBSCRIBER <n>                 connection n subscribed (the module's
#                                  purge listener; answered in every mode)
# PID_FILE gets the pid once the port listens; it is removed on exit.
# SIGTERM or SIGINT: exit.  --parent-pid: exit when that process is gone.
#
# MODE decides the answers:
#   loading          every command: -LOADING ...
#   oom              GET: nil; SET, EVAL, EVALSHA: -OOM ...; others: +OK
#   garbage          every command: bytes that are not RESP
#   truncated        GET: "$100\r\nabc", then nothing more on that
#                    connection (it stays open, commands are still logged);
#                    others: +OK
#   truncated-close  the same, then the connection is closed
#   wrongtype        GET: an integer (:42); others: +OK
#   wrongtype-array  GET: an array of two bulk strings; others: +OK
#   huge             GET: "$2000000000\r\n" then --stream-bytes bytes of
#                    "x" (32 MiB by default), then nothing more; others: +OK
#   hugearray        GET: "*2000000000\r\n" then --stream-bytes bytes of
#                    ":1\r\n" elements (8 MiB by default), then nothing
#                    more; others: +OK
#   nil              GET: nil; others: +OK (a well-behaved empty cache)
#   stall-slow       as nil, but a GET of a key with "slow" in it is never
#                    answered (the commands after it are still logged)
#   deaf-big         as nil, but after a SET of a value over 100 kB, it
#                    reads nothing more from that connection (a server
#                    that stopped reading: the sender's buffers fill)
#   flood            as nil, but a SUBSCRIBE, once confirmed, gets
#                    --stream-bytes bytes (256 MiB by default) of ":1"
#                    replies (valid RESP, ignored by the purge listener),
#                    written by a child process as fast as the socket
#                    takes them (not counted in CLOSE's bytes); the child
#                    gives up after 60 s

use strict;
use warnings;

use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Getopt::Long;
use IO::Select;
use IO::Socket::INET;
use POSIX ();

my %opt = (host => '127.0.0.1');
GetOptions(\%opt, 'host=s', 'parent-pid=i', 'stream-bytes=i')
    && @ARGV == 4 or usage();
my ($port, $mode, $log_file, $pid_file) = @ARGV;

my %MODES = map { $_ => 1 } qw(
    loading oom garbage truncated truncated-close wrongtype wrongtype-array
    huge hugearray nil flood stall-slow
    deaf-big
);
usage("unknown mode '$mode'") unless $MODES{$mode};
usage("bad port '$port'") unless $port =~ /^\d+$/ && $port > 0 && $port < 65536;

my $stream_bytes = $opt{'stream-bytes'}
    // ($mode eq 'huge'  ? 32 * 1024 * 1024
      : $mode eq 'flood' ? 256 * 1024 * 1024
      :                    8 * 1024 * 1024);

my $LOADING = "-LOADING Redis is loading the dataset in memory\r\n";
my $OOM     = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
my $GARBAGE = "\x00\xff garbage \x01\r\n";
my $OK      = "+OK\r\n";
my $NIL     = "\$-1\r\n";
my $CHUNK   = 65536;

$SIG{PIPE} = 'IGNORE';
my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };

my $listener = IO::Socket::INET->new(
    LocalAddr => $opt{host},
    LocalPort => $port,
    Listen    => 1024,
    ReuseAddr => 1,
    Proto     => 'tcp',
    Blocking  => 0,
) or die "fake-redis: cannot listen on $opt{host}:$port: $@\n";

open my $log, '>>:raw', $log_file
    or die "fake-redis: cannot open $log_file: $!\n";

write_file($pid_file, "$$\n");

my %conns;    # fileno => { sock, id, in, out, stream_left, stream_unit,
              #             stalled, close_after, sent }
my $accepted = 0;
my @children;  # flood writers
my $readers = IO::Select->new($listener);

until ($stop) {
    last if $opt{'parent-pid'} && getppid() != $opt{'parent-pid'};
    my $writers = IO::Select->new(
        map { $_->{sock} }
        grep { length $_->{out} || $_->{stream_left} || $_->{close_after} }
        values %conns);
    my ($readable, $writable) = IO::Select->select(
        $readers, $writers->count ? $writers : undef, undef, 0.2);
    for my $sock (@{$readable || []}) {
        if ($sock == $listener) {
            accept_all();
        } elsif (my $conn = conn_of($sock)) {
            on_readable($conn);
        }
    }
    for my $sock (@{$writable || []}) {
        my $conn = conn_of($sock) or next;
        flush($conn);
    }
}

close_conn($_, 'server') for values %conns;
kill 'KILL', @children if @children;
unlink $pid_file;
exit 0;


sub usage {
    my ($why) = @_;
    print STDERR "fake-redis: $why\n" if $why;
    print STDERR "usage: $0 PORT MODE LOG_FILE PID_FILE [--host ADDR] "
               . "[--parent-pid PID] [--stream-bytes N]\n"
               . "modes: " . join(' ', sort keys %MODES) . "\n";
    exit 2;
}

sub write_file {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "fake-redis: cannot write $file: $!\n";
    print {$fh} $text;
    close $fh or die "fake-redis: cannot write $file: $!\n";
    return;
}

# One whole line per write, so a reader never sees half a line.
sub log_line {
    my ($line) = @_;
    syswrite $log, "$line\n";
    return;
}

sub printable {
    my ($bytes) = @_;
    $bytes =~ s/([^\x21-\x7e])/sprintf '\\x%02x', ord $1/ge;
    return $bytes;
}

sub conn_of {
    my ($sock) = @_;
    my $fd = fileno $sock;
    return undef unless defined $fd;
    my $conn = $conns{$fd};
    return $conn && $conn->{sock} == $sock ? $conn : undef;
}

sub accept_all {
    while (my $sock = $listener->accept) {
        $sock->blocking(0);
        my $id = ++$accepted;
        $conns{fileno $sock} = {
            sock => $sock, id => $id, in => '', out => '',
            stream_left => 0, sent => 0,
        };
        $readers->add($sock);
        log_line("CONNECT $id");
    }
    return;
}

sub close_conn {
    my ($conn, $by) = @_;
    my $sock = $conn->{sock};
    my $fd = fileno $sock;
    return unless defined $fd && $conns{$fd} && $conns{$fd} == $conn;
    delete $conns{$fd};
    $readers->remove($sock);
    close $sock;
    log_line("CLOSE $conn->{id} $by $conn->{sent}");
    return;
}

sub on_readable {
    my ($conn) = @_;
    my $n = sysread $conn->{sock}, my $data, 65536;
    if (!defined $n) {
        return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
        close_conn($conn, 'peer');
        return;
    }
    if ($n == 0) {
        close_conn($conn, 'peer');
        return;
    }
    $conn->{in} .= $data;
    while (1) {
        my $command = eval { parse_command(\$conn->{in}) };
        if ($@) {
            chomp(my $error = $@);
            log_line("PROTOCOL-ERROR " . printable($error));
            $conn->{out} .= "-ERR Protocol error: $error\r\n";
            $conn->{close_after} = 1;
            $conn->{in} = '';
            last;
        }
        last unless $command;
        next unless @$command;    # an empty inline line
        answer($conn, $command);
    }
    flush($conn);
    return;
}

# The next command in $$buf (removed from it) as an arrayref of its
# arguments; undef when it has not fully arrived; dies on a protocol error.
# RESP arrays of bulk strings, and inline commands as redis-cli may send.
sub parse_command {
    my ($buf) = @_;
    return undef unless length $$buf;
    if (substr($$buf, 0, 1) ne '*') {
        my $end = index $$buf, "\n";
        if ($end < 0) {
            die "inline command too long\n" if length $$buf > 65536;
            return undef;
        }
        my $line = substr $$buf, 0, $end + 1, '';
        $line =~ s/\r?\n\z//;
        return [split ' ', $line];
    }
    my $end = index $$buf, "\r\n";
    if ($end < 0) {
        die "array header too long\n" if length $$buf > 64;
        return undef;
    }
    my $count = substr $$buf, 1, $end - 1;
    die "bad array length '$count'\n"
        unless $count =~ /^\d+$/ && $count <= 1024 * 1024;
    my $pos = $end + 2;
    my @args;
    for (1 .. $count) {
        my $eol = index $$buf, "\r\n", $pos;
        if ($eol < 0) {
            die "bulk header too long\n" if length($$buf) - $pos > 64;
            return undef;
        }
        my $header = substr $$buf, $pos, $eol - $pos;
        die "expected a bulk string, got '$header'\n"
            unless $header =~ /^\$(\d+)$/ && $1 <= 512 * 1024 * 1024;
        my $len = $1;
        my $start = $eol + 2;
        return undef if length $$buf < $start + $len + 2;
        die "bulk string not followed by CRLF\n"
            unless substr($$buf, $start + $len, 2) eq "\r\n";
        push @args, substr $$buf, $start, $len;
        $pos = $start + $len + 2;
    }
    substr($$buf, 0, $pos) = '';
    return \@args;
}

sub answer {
    my ($conn, $command) = @_;
    my $name = uc $command->[0];

    # the module's purge listener: answered as Redis does, in every mode,
    # and logged apart so that the data path's traffic can be told from it
    if ($name eq 'SUBSCRIBE' && @$command == 2) {
        log_line("SUBSCRIBER $conn->{id}");
        my $ch = $command->[1];
        $conn->{out} .= "*3\r\n\$9\r\nsubscribe\r\n\$" . length($ch)
                      . "\r\n$ch\r\n:1\r\n";
        flood($conn) if $mode eq 'flood';
        return;
    }

    log_line(join ' ', printable($name),
             @$command > 1 ? printable($command->[1]) : ());
    return if $conn->{stalled} || $conn->{close_after};

    if ($mode eq 'deaf-big' && uc $name eq 'SET' && @$command > 2
        && length $command->[2] > 100_000)
    {
        $conn->{stalled} = 1;
        $readers->remove($conn->{sock});
        return;
    }

    my $is_get = $name eq 'GET';
    if ($mode eq 'loading') {
        $conn->{out} .= $LOADING;
    } elsif ($mode eq 'oom') {
        $conn->{out} .= $is_get ? $NIL
                      : $name =~ /^(?:SET|EVAL|EVALSHA)$/ ? $OOM
                      : $OK;
    } elsif ($mode eq 'garbage') {
        $conn->{out} .= $GARBAGE;
    } elsif (!$is_get) {
        $conn->{out} .= $OK;
    } elsif ($mode eq 'stall-slow' && $command->[1] =~ /slow/) {
        $conn->{stalled} = 1;
    } elsif ($mode =~ /^(?:nil|flood|stall-slow|deaf-big)$/) {
        $conn->{out} .= $NIL;
    } elsif ($mode eq 'truncated' || $mode eq 'truncated-close') {
        $conn->{out} .= "\$100\r\nabc";
        $conn->{stalled} = 1;
        $conn->{close_after} = 1 if $mode eq 'truncated-close';
    } elsif ($mode eq 'wrongtype') {
        $conn->{out} .= ":42\r\n";
    } elsif ($mode eq 'wrongtype-array') {
        $conn->{out} .= "*2\r\n\$1\r\na\r\n\$1\r\nb\r\n";
    } elsif ($mode eq 'huge') {
        $conn->{out} .= "\$2000000000\r\n";
        start_stream($conn, 'x' x $CHUNK);
    } elsif ($mode eq 'hugearray') {
        $conn->{out} .= "*2000000000\r\n";
        start_stream($conn, ":1\r\n" x ($CHUNK / 4));
    }
    return;
}

# The confirmation out first, then a child writes the flood on the same
# socket, faster than this select loop could, while the parent goes on
# answering the other connections.
sub flood {
    my ($conn) = @_;
    flush($conn);
    my $pid = fork;
    die "fake-redis: fork: $!\n" unless defined $pid;
    if ($pid) {
        push @children, $pid;
        return;
    }
    $SIG{TERM} = $SIG{INT} = 'DEFAULT';
    alarm 60;
    my $unit = ":1\r\n" x 262144;
    my ($left, $off) = ($stream_bytes, 0);
    my $sel = IO::Select->new($conn->{sock});
    while ($left > 0) {
        last if $opt{'parent-pid'} && !kill 0, $opt{'parent-pid'};
        next unless $sel->can_write(1);
        my $len = length($unit) - $off;
        $len = $left if $left < $len;
        my $n = syswrite $conn->{sock}, $unit, $len, $off;
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            last;
        }
        $left -= $n;
        $off = ($off + $n) % length $unit;
    }
    POSIX::_exit(0);
}

sub start_stream {
    my ($conn, $unit) = @_;
    $conn->{stream_unit} = $unit;
    $conn->{stream_left} = $stream_bytes;
    $conn->{stalled} = 1;
    return;
}

# Write what is pending, topping the buffer up from the stream, until the
# socket would block.
sub flush {
    my ($conn) = @_;
    while (1) {
        if (length $conn->{out} < $CHUNK && $conn->{stream_left}) {
            my $n = $conn->{stream_left} < $CHUNK ? $conn->{stream_left}
                                                  : $CHUNK;
            $conn->{out} .= substr $conn->{stream_unit}, 0, $n;
            $conn->{stream_left} -= $n;
        }
        last unless length $conn->{out};
        my $n = syswrite $conn->{sock}, $conn->{out};
        if (!defined $n) {
            return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            close_conn($conn, 'peer');
            return;
        }
        $conn->{sent} += $n;
        substr($conn->{out}, 0, $n) = '';
    }
    close_conn($conn, 'server') if $conn->{close_after};
    return;
}
