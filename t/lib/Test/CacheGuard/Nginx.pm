package Test::CacheGuard::Nginx;

# One nginx instance under test: its server root, nginx.conf, and the
# process (a foreground child of the test process, "daemon off").
#
#   my $nginx = Test::CacheGuard::Nginx->new(
#       servroot => $dir, port => 1984, valgrind => 0);
#   $nginx->prepare;                       # kill a stale one, wipe the dirs
#   $nginx->write_config(build_config(...));
#   $nginx->start or diag $nginx->start_error;
#   ... $nginx->reload; $nginx->worker_pids; $nginx->error_log_since_start;
#   $nginx->stop;

use strict;
use warnings;

use Exporter qw(import);
use File::Path qw(make_path remove_tree);
use POSIX ();

use Test::CacheGuard::Util qw(
    repo_root wait_until port_listening process_alive child_pids
    process_cmdline
);

our @EXPORT_OK = qw(build_config);

# Generous bounds for a loaded machine; valgrind multiplies them.
my $START_TIMEOUT    = 10;
my $VALGRIND_START   = 30;
my $STOP_TIMEOUT     = 10;
my $VALGRIND_SLOWDOWN = 6;

sub new {
    my ($class, %args) = @_;
    my $binary = $ENV{TEST_NGINX_BINARY}
        // (-x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx');
    return bless {
        servroot => $args{servroot},
        port     => $args{port},
        valgrind => $args{valgrind} ? 1 : 0,
        binary   => $binary,
        pid      => undef,
    }, $class;
}

sub pid            { return $_[0]{pid} }
sub start_error    { return $_[0]{start_error} // '' }
sub error_log_file { return "$_[0]{servroot}/logs/error.log" }
sub stderr_file    { return "$_[0]{servroot}/logs/stderr.log" }
sub valgrind_file  { return "$_[0]{servroot}/logs/valgrind.log" }

sub _read_file {
    my ($file, $offset) = @_;
    open my $fh, '<:raw', $file or return '';
    seek $fh, $offset, 0 if $offset;
    local $/;
    return <$fh> // '';
}

sub error_log_since_start {
    my ($self) = @_;
    return _read_file($self->error_log_file, $self->{log_offset});
}

sub stderr_output { return _read_file($_[0]->stderr_file) }

# Kill an nginx left running from this server root by an earlier run (the
# test process was killed), wipe the per-run directories, create them.
sub prepare {
    my ($self) = @_;
    my $root = $self->{servroot};
    my ($stale) = _read_file("$root/logs/nginx.pid") =~ /(\d+)/;
    if ($stale && process_alive($stale)
        && index(process_cmdline($stale), "-p $root/") >= 0) {
        kill 'TERM', $stale;
        wait_until(sub { !process_alive($stale) }, $STOP_TIMEOUT)
            or kill 'KILL', $stale;
    }
    die "port $self->{port} is already in use (set the TEST_NGINX_*PORT "
      . "variables?)\n" if port_listening($self->{port})
        && !wait_until(sub { !port_listening($self->{port}) }, $STOP_TIMEOUT);
    remove_tree(map { "$root/$_" } qw(conf logs html tmp));
    make_path(map { "$root/$_" } qw(conf logs html tmp));
    return;
}

sub write_config {
    my ($self, $text) = @_;
    my $file = "$self->{servroot}/conf/nginx.conf";
    open my $fh, '>', $file or die "cannot write $file: $!\n";
    print {$fh} $text;
    close $fh or die "cannot write $file: $!\n";
    $self->{single_process} =
        $self->{valgrind} || $text =~ /^\s*master_process\s+off\s*;/m;
    return;
}

sub _command {
    my ($self) = @_;
    my @nginx = ($self->{binary}, '-p', "$self->{servroot}/",
                 '-c', 'conf/nginx.conf');
    return @nginx unless $self->{valgrind};
    my $suppressions = repo_root() . '/t/valgrind.suppress';
    return ('valgrind', '--tool=memcheck', '--num-callers=30',
            (-f $suppressions ? "--suppressions=$suppressions" : ()),
            '--log-file=' . $self->valgrind_file,
            split(' ', $ENV{TEST_NGINX_VALGRIND_OPTS} // ''),
            @nginx);
}

sub _reaped {
    my ($self) = @_;
    my $pid = $self->{pid} or return 1;
    return 0 unless waitpid($pid, POSIX::WNOHANG()) == $pid;
    $self->{exit_status} = $?;
    undef $self->{pid};
    return 1;
}

# Start nginx and wait until it listens and (master mode) has a worker.
# Returns true on success; else false with start_error set (nginx exited,
# e.g. because of a bad directive, or it did not come up in time).
sub start {
    my ($self) = @_;
    die "nginx already running (pid $self->{pid})\n" if $self->{pid};
    $self->{log_offset} = -s $self->error_log_file // 0;
    delete $self->{start_error};
    my @cmd = $self->_command;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->stderr_file;
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $bound = $self->{valgrind} ? $VALGRIND_START : $START_TIMEOUT;
    my $up = wait_until(sub {
        return 1 if $self->_reaped;    # exited: no use waiting
        return 0 unless port_listening($self->{port});
        return 1 if $self->{single_process};
        return scalar $self->worker_pids;
    }, $bound);
    return 1 if $up && $self->{pid};
    if ($self->{pid}) {
        $self->stop;
        $self->{start_error} = "nginx was not serving on port $self->{port} "
                             . "after ${bound}s";
    } else {
        my $status = $self->{exit_status};
        $self->{start_error} = 'nginx exited with '
            . (($status & 127) ? 'signal ' . ($status & 127)
                               : 'status ' . ($status >> 8));
    }
    return 0;
}

# Worker processes serving requests (not the ones shutting down after a
# reload); the process itself with master_process off (valgrind).
sub worker_pids {
    my ($self) = @_;
    my $pid = $self->{pid} or return ();
    return ($pid) if $self->{single_process};
    return grep {
        process_cmdline($_) =~ /^nginx: worker process(?! is shutting down)/
    } child_pids($pid);
}

# SIGHUP, then wait until the new configuration serves: every serving
# worker is a new one (master mode), or the "reconfiguring" notice is
# logged (single process).  False if that did not happen in time (e.g. the
# new configuration is invalid: the old workers keep serving).
sub reload {
    my ($self) = @_;
    my $pid = $self->{pid} or die "nginx_reload: nginx is not running\n";
    my $bound = $self->{valgrind} ? $VALGRIND_START : $START_TIMEOUT;
    if ($self->{single_process}) {
        my $count = sub {
            my @lines = $self->error_log_since_start =~ /reconfiguring/g;
            return scalar @lines;
        };
        my $before = $count->();
        kill 'HUP', $pid;
        return wait_until(sub { $count->() > $before }, $bound);
    }
    my %old = map { ($_ => 1) } $self->worker_pids;
    kill 'HUP', $pid;
    return wait_until(sub {
        my @now = $self->worker_pids;
        return @now && !grep { $old{$_} } @now;
    }, $bound);
}

# QUIT (graceful), then TERM, then KILL (with the workers); always reaped.
sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    my $bound = $STOP_TIMEOUT * ($self->{valgrind} ? $VALGRIND_SLOWDOWN : 1);
    my @children = child_pids($pid);
    for my $signal (qw(QUIT TERM)) {
        kill $signal, $pid;
        return if wait_until(sub { $self->_reaped }, $bound);
    }
    push @children, child_pids($pid);
    kill 'KILL', $pid;
    waitpid $pid, 0;
    undef $self->{pid};
    kill 'KILL', grep {
        process_alive($_) && process_cmdline($_) =~ /^nginx/
    } @children;
    return;
}

# (number of errors, report) from valgrind's log; (0, '') without one.
sub valgrind_errors {
    my ($self) = @_;
    my $log = _read_file($self->valgrind_file);
    my $errors = 0;
    $errors += $1 while $log =~ /ERROR SUMMARY: (\d+) errors/g;
    my @lines = split /\n/, $log;
    splice @lines, 80 if @lines > 80;
    return ($errors, join "\n", @lines);
}

# --- nginx.conf --------------------------------------------------------

# True when $text sets directive $name (at the start of a line or after
# a ";").
sub _sets {
    my ($text, $name) = @_;
    return $text =~ /(?:^|;)[ \t]*\Q$name\E\s/m;
}

sub _strip {
    my ($text, @names) = @_;
    for my $name (@names) {
        $text =~ s/(^|;)[ \t]*\Q$name\E\s[^;]*;/$1/mg;
    }
    return $text;
}

# Defaults that the section does not set itself, then the section.
sub _with_defaults {
    my ($section, $indent, @defaults) = @_;
    my @lines = map { "$indent$_->[1]" } grep { !_sets($section, $_->[0]) }
        @defaults;
    return join "\n", @lines, $section;
}

# build_config(module => path|undef, main_config, event_config,
#              http_config, server_config, port, log_level, valgrind)
sub build_config {
    my (%args) = @_;
    my $main   = $args{main_config}  // '';
    my $events = $args{event_config} // '';
    my $http   = $args{http_config}  // '';
    my $server = $args{server_config} // '';

    # Always in the foreground; under valgrind one single process.
    $main = _strip($main, 'daemon');
    $main = _strip($main, 'master_process', 'worker_processes')
        if $args{valgrind};

    my $main_text = _with_defaults($main, '',
        [daemon           => 'daemon off;'],
        [master_process   => 'master_process '
                             . ($args{valgrind} ? 'off' : 'on') . ';'],
        [worker_processes => 'worker_processes 1;'],
        [error_log        => "error_log logs/error.log $args{log_level};"],
        [pid              => 'pid logs/nginx.pid;'],
        ($> == 0 ? [user  => 'user root;'] : ()),
    );
    my $events_text = _with_defaults($events, '    ',
        [worker_connections => 'worker_connections 1024;'],
    );
    my $http_text = _with_defaults($http, '    ',
        [access_log            => 'access_log logs/access.log;'],
        [default_type          => 'default_type text/plain;'],
        [client_body_temp_path => 'client_body_temp_path tmp/client_body;'],
        [proxy_temp_path       => 'proxy_temp_path tmp/proxy;'],
        [fastcgi_temp_path     => 'fastcgi_temp_path tmp/fastcgi;'],
        [uwsgi_temp_path       => 'uwsgi_temp_path tmp/uwsgi;'],
        [scgi_temp_path        => 'scgi_temp_path tmp/scgi;'],
    );

    my $conf = '';
    $conf .= "load_module $args{module};\n" if $args{module};
    $conf .= <<"END";
$main_text

events {
$events_text
}

http {
$http_text

    server {
        listen 127.0.0.1:$args{port};
        server_name localhost;

$server
    }
}
END
    return $conf;
}

1;
