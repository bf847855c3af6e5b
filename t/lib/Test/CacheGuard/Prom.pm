package Test::CacheGuard::Prom;

# A strict parser of the Prometheus text exposition format, version 0.0.4
# (https://prometheus.io/docs/instrumenting/exposition_formats/), for the
# tests of cache_guard_metrics.  It reads everything it can and lists every
# rule broken, with the line number:
#
#   - a line is blank, a comment ("# HELP name text", "# TYPE name type",
#     any other "#" line) or a sample
#     "name[{label="value",...}] value [timestamp]"; the text ends with "\n"
#   - metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
#     [a-zA-Z_][a-zA-Z0-9_]* (not "__..."), no label twice in a sample;
#     label values UTF-8 with only \\ \" \n escaped; HELP text with only
#     \\ \n escaped
#   - values are Go floats (+Inf, -Inf, NaN included); timestamps integers
#   - TYPE is counter, gauge, histogram, summary or untyped; HELP and TYPE
#     at most once per metric family and before its samples
#   - all lines of a family (its HELP, TYPE and samples) form one group
#   - a histogram's samples are NAME_bucket (with le, in ascending order of
#     le, cumulative counts never decreasing, the last le="+Inf"),
#     NAME_sum and NAME_count, the count equal to the +Inf bucket, for every
#     label set; a summary's are NAME (with quantile), NAME_sum, NAME_count
#   - a counter's name ends in _total (the naming rule Prometheus' own
#     client libraries follow)
#   - no series twice (same name and labels)
#
#   my $p = prom_parse($text);     # { families, order, errors }
#   $p->{errors}                   # [ "line 3: ...", ... ], empty when valid
#   $p->{families}{NAME}           # { type, help, samples => [ ... ] }
#       sample: { name, labels => {name => value}, value (a number),
#                 raw (the value as written), timestamp, line }
#   prom_value($p, 'cache_guard_hits_total', {policy => 'p', level => 'l1'})
#       the value of the sample with exactly those labels, or undef
#   prom_sum($p, NAME, {label => value, ...})
#       the sum of the samples whose labels include those (0 if none)
#   prom_samples($p, NAME)         # the samples of that name, in order

use strict;
use warnings;

use Encode ();
use Exporter qw(import);

our @EXPORT_OK = qw(prom_parse prom_value prom_sum prom_samples);
our @EXPORT = @EXPORT_OK;

my $METRIC = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LABEL  = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my %TYPES  = map { ($_ => 1) } qw(counter gauge histogram summary untyped);

# What Go's strconv.ParseFloat accepts, without hexadecimal floats and
# underscores (no exporter writes them).
my $FLOAT = qr/[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
               |[+-]?(?i:inf|infinity)|(?i:nan)/x;

sub _number {
    my ($raw) = @_;
    return 9**9**9 if $raw =~ /^\+?inf(?:inity)?$/i;
    return -9**9**9 if $raw =~ /^-inf(?:inity)?$/i;
    return 'NaN' + 0 if $raw =~ /^[+-]?nan$/i;
    return $raw + 0;
}

sub _valid_utf8 {
    my ($bytes) = @_;
    return 1 unless $bytes =~ /[\x80-\xff]/;
    my $copy = $bytes;
    return eval { Encode::decode('UTF-8', $copy, Encode::FB_CROAK()); 1 };
}

# The text of a HELP line or of a label value, unescaped; undef after
# adding an error for a bad escape.
sub _unescape {
    my ($text, $allowed, $err) = @_;
    my $out = '';
    while ($text =~ /\G(?:([^\\]+)|\\(.?))/gcs) {
        if (defined $1) {
            $out .= $1;
            next;
        }
        my $c = $2;
        if ($c eq '' || index($allowed, $c) < 0) {
            $err->("invalid escape sequence '\\$c'");
            return undef;
        }
        $out .= $c eq 'n' ? "\n" : $c;
    }
    return $out;
}

# The family a sample name belongs to, given the TYPEs seen so far.
sub _family_of {
    my ($name, $types) = @_;
    if ($name =~ /^(.+)_(bucket|sum|count)$/) {
        my ($base, $suffix) = ($1, $2);
        my $type = $types->{$base} // '';
        return ($base, $suffix) if $type eq 'histogram';
        return ($base, $suffix) if $type eq 'summary' && $suffix ne 'bucket';
    }
    return ($name, '');
}

sub _canonical {
    my ($name, $labels) = @_;
    return join "\0", $name,
        map { "$_=$labels->{$_}" } sort keys %$labels;
}

sub prom_parse {
    my ($text) = @_;
    my (@errors, %families, @order, %types, %closed, %series);
    my $current;            # the family whose lines are being read
    my $lineno = 0;

    my $family = sub {
        my ($name) = @_;
        unless ($families{$name}) {
            $families{$name} = { type => undef, help => undef, samples => [] };
            push @order, $name;
        }
        return $families{$name};
    };
    # Each line of family $name: the family's group must be contiguous.
    my $enter = sub {
        my ($name, $err) = @_;
        return if defined $current && $current eq $name;
        $closed{$current} = 1 if defined $current;
        $err->("metric family $name appears again after other families: "
               . 'its lines must form one group') if $closed{$name};
        $current = $name;
    };

    push @errors, 'the text does not end with a line feed'
        if length $text && substr($text, -1) ne "\n";

    for my $line (split /\n/, $text, -1) {
        $lineno++;
        my $err = sub { push @errors, "line $lineno: $_[0]: '$line'" };

        # leading and trailing blanks are ignored
        (my $l = $line) =~ s/^[ \t]+|[ \t]+$//g;
        next if $l eq '';

        if ($l =~ /^#[ \t]*(HELP|TYPE)(?:[ \t]+(.*))?$/s) {
            my ($kind, $rest) = ($1, $2 // '');
            my ($name, $arg) = $rest =~ /^(\S+)(?:[ \t]+(.*))?$/s;
            unless (defined $name && $name =~ /^$METRIC$/) {
                $err->("$kind needs a valid metric name");
                next;
            }
            $enter->($name, $err);
            my $f = $family->($name);
            $err->("$kind of $name after its samples")
                if @{$f->{samples}};
            if ($kind eq 'HELP') {
                $err->("second HELP for $name") if defined $f->{help};
                my $help = _unescape($arg // '', "\\n", $err);
                $err->('HELP text is not valid UTF-8')
                    if defined $help && !_valid_utf8($help);
                $f->{help} //= $help // '';
            } else {
                $err->("second TYPE for $name") if defined $f->{type};
                my $type = $arg // '';
                unless ($TYPES{$type}) {
                    $err->("unknown TYPE '$type' for $name");
                    next;
                }
                $f->{type} //= $type;
                $types{$name} //= $type;
            }
            next;
        }
        next if $l =~ /^#/;

        # a sample
        unless ($l =~ /\G($METRIC)/gc) {
            $err->('not a comment nor a sample (bad metric name)');
            next;
        }
        my $name = $1;
        my %labels;
        my $ok = 1;
        if ($l =~ /\G[ \t]*\{/gc) {
            while (1) {
                $l =~ /\G[ \t]*/gc;
                last if $l =~ /\G\}/gc;
                unless ($l =~ /\G($LABEL)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"/gcs) {
                    $err->('bad label pair (name="value", escapes \\\\ \\" \\n)');
                    $ok = 0;
                    last;
                }
                my ($label, $raw) = ($1, $2);
                my $value = _unescape($raw, "\\\"n", $err);
                unless (defined $value) {
                    $ok = 0;
                    last;
                }
                $err->("reserved label name $label") if $label =~ /^__/;
                $err->("label $label twice") if exists $labels{$label};
                $err->("label $label is not valid UTF-8")
                    unless _valid_utf8($value);
                $labels{$label} = $value;
                $l =~ /\G[ \t]*/gc;
                next if $l =~ /\G,/gc;
                last if $l =~ /\G\}/gc;
                $err->("expected ',' or '}' after label $label");
                $ok = 0;
                last;
            }
        }
        next unless $ok;
        # a blank separates the value from a name, not from a '}'
        my $at = pos($l) // length $l;
        my $rest = substr $l, $at;
        my $blank = substr($l, $at - 1, 1) eq '}' ? '*' : '+';
        my ($raw, $ts) = $rest =~ /^[ \t]$blank(\S+)(?:[ \t]+(\S+))?$/;
        unless (defined $raw) {
            $err->('a sample needs a value (and at most a timestamp)');
            next;
        }
        unless ($raw =~ /^$FLOAT$/) {
            $err->("value '$raw' is not a float");
            next;
        }
        if (defined $ts && $ts !~ /^-?[0-9]+$/) {
            $err->("timestamp '$ts' is not an integer");
            next;
        }

        my ($fname, $suffix) = _family_of($name, \%types);
        $enter->($fname, $err);
        my $f = $family->($fname);
        my $type = $f->{type} // 'untyped';
        $err->("sample name $name: the family of a histogram has only "
               . '_bucket, _sum and _count samples')
            if $type eq 'histogram' && $suffix eq '';
        $err->("counter $name: a counter's name ends in _total")
            if $type eq 'counter' && $name !~ /_total$/;
        if ($type eq 'histogram' && $suffix eq 'bucket') {
            $err->("bucket without le") unless exists $labels{le};
        } elsif ($type eq 'summary' && $suffix eq '') {
            $err->("summary sample without quantile")
                unless exists $labels{quantile};
        }
        $err->("le='$labels{le}' is not a float")
            if exists $labels{le} && $labels{le} !~ /^$FLOAT$/;
        $err->("$name: le on a sample that is no bucket")
            if exists $labels{le} && $type eq 'histogram'
               && $suffix ne 'bucket';

        my $key = _canonical($name, \%labels);
        $err->("duplicate series $name"
               . '{' . join(',', map { "$_=\"$labels{$_}\"" }
                                 sort keys %labels) . '}')
            if $series{$key}++;

        push @{$f->{samples}}, {
            name      => $name,
            suffix    => $suffix,
            labels    => \%labels,
            raw       => $raw,
            value     => _number($raw),
            timestamp => $ts,
            line      => $lineno,
        };
    }

    for my $name (@order) {
        my $f = $families{$name};
        push @errors, _check_histogram($name, $f)
            if ($f->{type} // '') eq 'histogram';
        push @errors, _check_summary($name, $f)
            if ($f->{type} // '') eq 'summary';
    }

    my $parsed = { families => \%families, order => \@order,
                   errors => \@errors };
    return wantarray ? ($parsed, \@errors) : $parsed;
}

# For each label set (without le): ascending le ending at +Inf, cumulative
# counts, _sum and _count present, _count equal to the +Inf bucket.
sub _check_histogram {
    my ($name, $f) = @_;
    my (@errors, %sets, @set_order);
    for my $s (@{$f->{samples}}) {
        my %l = %{$s->{labels}};
        delete $l{le} if $s->{suffix} eq 'bucket';
        my $key = _canonical('', \%l);
        push @set_order, $key unless $sets{$key};
        my $set = $sets{$key} //= { buckets => [], desc => \%l };
        if ($s->{suffix} eq 'bucket') {
            push @{$set->{buckets}}, $s if exists $s->{labels}{le};
        } elsif ($s->{suffix}) {
            $set->{$s->{suffix}} = $s;
        }
    }
    for my $key (@set_order) {
        my $set = $sets{$key};
        my $what = "histogram $name"
            . '{' . join(',', map { "$_=\"$set->{desc}{$_}\"" }
                              sort keys %{$set->{desc}}) . '}';
        my @b = grep { $_->{labels}{le} =~ /^$FLOAT$/ } @{$set->{buckets}};
        push @errors, "$what: no buckets" unless @b;
        for my $i (1 .. $#b) {
            my ($prev, $this) = @b[$i - 1, $i];
            my ($le0, $le1) = map { _number($_->{labels}{le}) }
                              $prev, $this;
            push @errors, "line $this->{line}: $what: le=\"$this->{labels}{le}\""
                . " not above the previous bucket's le=\"$prev->{labels}{le}\""
                unless $le1 > $le0;
            push @errors, "line $this->{line}: $what: le=\"$this->{labels}{le}\""
                . " counts $this->{raw}, less than the previous bucket"
                unless $this->{value} >= $prev->{value};
        }
        my $inf = @b && _number($b[-1]{labels}{le}) == 9**9**9 ? $b[-1] : undef;
        push @errors, "$what: the last bucket is not le=\"+Inf\""
            if @b && !$inf;
        push @errors, "$what: no ${name}_sum" unless $set->{sum};
        if (!$set->{count}) {
            push @errors, "$what: no ${name}_count";
        } elsif ($inf && $set->{count}{value} != $inf->{value}) {
            push @errors, "line $set->{count}{line}: $what: _count "
                . "$set->{count}{raw} differs from the +Inf bucket $inf->{raw}";
        }
    }
    return @errors;
}

sub _check_summary {
    my ($name, $f) = @_;
    my (@errors, %sets);
    for my $s (@{$f->{samples}}) {
        my %l = %{$s->{labels}};
        delete $l{quantile} if $s->{suffix} eq '';
        my $set = $sets{_canonical('', \%l)} //= {};
        $set->{$s->{suffix} || 'q'}++;
    }
    for my $key (sort keys %sets) {
        for my $part (qw(sum count)) {
            push @errors, "summary $name: a label set without ${name}_$part"
                unless $sets{$key}{$part};
        }
    }
    return @errors;
}

sub prom_samples {
    my ($p, $name) = @_;
    my ($fname) = _family_of($name, {
        map { ($_ => $p->{families}{$_}{type} // 'untyped') }
            keys %{$p->{families}}
    });
    my $f = $p->{families}{$fname} or return ();
    return grep { $_->{name} eq $name } @{$f->{samples}};
}

sub prom_value {
    my ($p, $name, $labels) = @_;
    my $want = _canonical($name, $labels // {});
    for my $s (prom_samples($p, $name)) {
        return $s->{value} if _canonical($name, $s->{labels}) eq $want;
    }
    return undef;
}

sub prom_sum {
    my ($p, $name, $labels) = @_;
    my $sum = 0;
    SAMPLE: for my $s (prom_samples($p, $name)) {
        for my $l (keys %{$labels // {}}) {
            next SAMPLE unless ($s->{labels}{$l} // "\0") eq $labels->{$l};
        }
        $sum += $s->{value};
    }
    return $sum;
}

1;
