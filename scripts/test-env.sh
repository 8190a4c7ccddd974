#!/usr/bin/env bash
# Prepare this machine for eventfn's integration tests. Idempotent: safe to run again and again;
# a run on a machine that is already prepared changes nothing and takes about a second.
#
# What it brings up (Debian bookworm, as root, no systemd: nothing starts by itself):
#   RabbitMQ   AMQP 127.0.0.1:5672, STOMP 61613, Web-STOMP 15674 (/ws), MQTT 1884,
#              Web-MQTT 15675 (/ws), management API 15672; user guest/guest on loopback.
#   Mosquitto  MQTT 127.0.0.1:1883, anonymous.
#   SLURM accounting (private, in /var/tmp/eventfn-slurm): munged on its own socket, MariaDB
#              on 127.0.0.1:3307, slurmdbd on 16819, cluster "eventfn". Clients find it with
#              SLURM_CONF=/var/tmp/eventfn-slurm/slurm.conf (also written to
#              /var/tmp/eventfn-slurm/env as KEY=VALUE lines).
#
# Every daemon is started with stdin/stdout/stderr redirected and all other file descriptors
# closed, so `bash scripts/test-env.sh | cat` (or a Go test running it) does not hang.
# Exit status is non-zero, with a message naming what failed, when something cannot be brought up.
set -euo pipefail

SLURM_DIR=/var/tmp/eventfn-slurm
SLURM_CLUSTER=eventfn
SLURM_CONF_FILE=$SLURM_DIR/slurm.conf
SLURMDBD_CONF_FILE=$SLURM_DIR/slurmdbd.conf
SLURM_ENV_FILE=$SLURM_DIR/env
SLURM_LOG_DIR=$SLURM_DIR/log
SLURM_RUN_DIR=$SLURM_DIR/run
MUNGE_DIR=$SLURM_DIR/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket
MUNGE_KEY=$MUNGE_DIR/munge.key
MUNGE_PIDFILE=$MUNGE_DIR/munged.pid
MUNGE_SEED=$MUNGE_DIR/munged.seed
MUNGE_LOG=$MUNGE_DIR/munged.log
DB_DIR=$SLURM_DIR/mysql
DB_DATA=$DB_DIR/data
DB_SOCKET=$DB_DIR/mysqld.sock
DB_PIDFILE=$DB_DIR/mysqld.pid
DB_LOG=$SLURM_LOG_DIR/mariadb.log
DB_PORT=3307
DB_USER=slurm
DB_PASS=eventfn
DB_NAME=slurm_acct_db
DBD_PORT=16819
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PIDFILE=$SLURM_RUN_DIR/slurmdbd.pid
DBD_LOG=$SLURM_LOG_DIR/slurmdbd.log
DB_RESTARTED=0

RMQ_CONF=/etc/rabbitmq/rabbitmq.conf
RMQ_ENABLED_PLUGINS=/etc/rabbitmq/enabled_plugins
RMQ_PLUGINS=(rabbitmq_stomp rabbitmq_web_stomp rabbitmq_mqtt rabbitmq_web_mqtt rabbitmq_management)
RMQ_PORTS=(5672 61613 15674 15675 1884 15672)
MOSQUITTO_CONF=/etc/mosquitto/mosquitto.conf
MOSQUITTO_PORT=1883

PACKAGES=(rabbitmq-server mosquitto mariadb-server slurmdbd slurmctld slurm-client munge)

# Logs of the commands this script runs (apt-get, rabbitmqctl, ...); daemons log elsewhere.
WORK_LOG_DIR=/var/tmp/eventfn-test-env
mkdir -p "$WORK_LOG_DIR"

SUMMARY=()

log() { printf '[test-env] %s\n' "$*"; }
warn() { printf '[test-env] %s\n' "$*" >&2; }
die() {
	printf '[test-env] ERROR: %s\n' "$*" >&2
	exit 1
}
note() { SUMMARY+=("$*"); }

# tail_log FILE: show the end of a log on stderr (for error messages).
tail_log() {
	if [[ -f $1 ]]; then
		printf '[test-env] --- last lines of %s ---\n' "$1" >&2
		tail -n 25 "$1" >&2 || true
	fi
}

# close_fds: in a subshell, close every inherited descriptor above 2.
close_fds() {
	local fd
	for fd in /proc/$BASHPID/fd/*; do
		fd=${fd##*/}
		if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
			eval "exec $fd>&-" 2>/dev/null || true
		fi
	done
}

# run_logged LOG CMD...: run CMD synchronously with no stdin, output appended to LOG and every
# other descriptor closed (CMD may leave daemons behind that must not hold our stdout).
run_logged() {
	local logf=$1
	shift
	(
		close_fds
		exec "$@" </dev/null >>"$logf" 2>&1
	)
}

# spawn LOG CMD...: start a foreground-style daemon in its own session, detached from us.
spawn() {
	local logf=$1
	shift
	(
		close_fds
		exec setsid "$@" </dev/null >>"$logf" 2>&1
	) &
}

port_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# wait_ports TIMEOUT PORT...: true once every port accepts TCP connections.
wait_ports() {
	local deadline=$((SECONDS + $1)) p all
	shift
	while :; do
		all=1
		for p in "$@"; do
			port_open "$p" || {
				all=0
				break
			}
		done
		((all)) && return 0
		((SECONDS >= deadline)) && return 1
		sleep 0.5
	done
}

closed_ports() {
	local p out=()
	for p in "$@"; do port_open "$p" || out+=("$p"); done
	echo "${out[*]-}"
}

# write_if_changed FILE MODE CONTENT: returns 0 when the file was (re)written, 1 when unchanged.
write_if_changed() {
	local file=$1 mode=$2 content=$3
	if [[ -f $file ]] && [[ "$(cat "$file")" == "$content" ]]; then
		chmod "$mode" "$file"
		return 1
	fi
	printf '%s\n' "$content" >"$file.tmp.$$"
	chmod "$mode" "$file.tmp.$$"
	mv -f "$file.tmp.$$" "$file"
	return 0
}

pkg_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# proc_live PID: the process exists and is not a zombie.
proc_live() {
	local state
	[[ -d /proc/$1 ]] || return 1
	state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null || true)
	[[ -n $state && $state != Z ]]
}

# pid_alive PIDFILE COMM: true when PIDFILE names a live (non-zombie) process called COMM.
pid_alive() {
	local pid
	[[ -f $1 ]] || return 1
	pid=$(tr -dc '0-9' <"$1")
	[[ -n $pid && -r /proc/$pid/comm ]] || return 1
	[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] || return 1
	proc_live "$pid"
}

# our_pids COMM: live processes called COMM whose command line or environment mentions SLURM_DIR.
our_pids() {
	local d pid
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		[[ "$(cat "$d/comm" 2>/dev/null)" == "$1" ]] || continue
		if [[ "$(tr '\0' '\n' 2>/dev/null <"$d/cmdline")" == *"$SLURM_DIR"* ]] ||
			[[ "$(tr '\0' '\n' 2>/dev/null <"$d/environ")" == *"$SLURM_DIR"* ]]; then
			echo "$pid"
		fi
	done
}

# stop_ours COMM: TERM (then KILL) every private daemon called COMM.
stop_ours() {
	local pids pid i left
	pids=$(our_pids "$1")
	[[ -n $pids ]] || return 0
	log "stopping private $1 ($(echo $pids))"
	for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
	for ((i = 0; i < 40; i++)); do
		left=
		for pid in $pids; do proc_live "$pid" && left+=" $pid"; done
		[[ -z $left ]] && return 0
		sleep 0.25
	done
	log "$1 ignored SIGTERM for 10 s, killing it"
	for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
	sleep 0.5
}

###############################################################################################
# 0. Packages
###############################################################################################
install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		pkg_installed "$p" || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	local apt_log=$WORK_LOG_DIR/apt.log
	: >"$apt_log"
	log "installing ${missing[*]} (log: $apt_log)"
	run_logged "$apt_log" apt-get update ||
		{ tail_log "$apt_log"; die "apt-get update failed"; }
	run_logged "$apt_log" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" ||
		{ tail_log "$apt_log"; die "apt-get install ${missing[*]} failed"; }
	note "installed: ${missing[*]}"
}

###############################################################################################
# 1. RabbitMQ
###############################################################################################

# rmq_conf_line KEY VALUE: make rabbitmq.conf say KEY = VALUE, keeping every other line.
# Returns 0 when the file changed.
rmq_conf_line() {
	local key=$1 value=$2 kre
	kre=$(printf '%s' "$key" | sed 's/[.[\*^$/]/\\&/g')
	mkdir -p "$(dirname "$RMQ_CONF")"
	touch "$RMQ_CONF"
	if grep -qE "^[[:space:]]*${kre}[[:space:]]*=[[:space:]]*${value}[[:space:]]*$" "$RMQ_CONF"; then
		return 1
	fi
	if grep -qE "^[[:space:]]*${kre}[[:space:]]*=" "$RMQ_CONF"; then
		sed -i -E "s/^[[:space:]]*${kre}[[:space:]]*=.*/${key} = ${value}/" "$RMQ_CONF"
	else
		if [[ -s $RMQ_CONF ]] && [[ -n "$(tail -c 1 "$RMQ_CONF")" ]]; then
			echo >>"$RMQ_CONF"
		fi
		echo "${key} = ${value}" >>"$RMQ_CONF"
	fi
	return 0
}

rmq_plugins_enabled() {
	local p list
	[[ -f $RMQ_ENABLED_PLUGINS ]] || return 1
	list=" $(tr -d '[]. \n\r\t' <"$RMQ_ENABLED_PLUGINS" | tr ',' ' ') "
	for p in "${RMQ_PLUGINS[@]}"; do
		[[ $list == *" $p "* ]] || return 1
	done
}

rmq_logs() {
	local f
	for f in /var/log/rabbitmq/*.log /var/log/rabbitmq/startup_err "$WORK_LOG_DIR/rabbitmq.log"; do
		[[ -s $f ]] && tail_log "$f"
	done
	return 0
}

setup_rabbitmq() {
	local rlog=$WORK_LOG_DIR/rabbitmq.log conf_changed=0 up=0 i
	if rmq_conf_line mqtt.listeners.tcp.default 1884; then
		conf_changed=1
		log "rabbitmq: $RMQ_CONF now sets mqtt.listeners.tcp.default = 1884"
	fi
	port_open 5672 && up=1

	if ((conf_changed || !up)); then
		if ((up)); then
			log "rabbitmq: restarting to apply the configuration"
			run_logged "$rlog" rabbitmqctl stop || true
			# wait until the old node is gone (AMQP and distribution ports closed)
			for ((i = 0; i < 60; i++)); do
				port_open 5672 || port_open 25672 || break
				sleep 0.5
			done
		else
			log "rabbitmq: broker is down, starting it"
			run_logged "$rlog" rabbitmqctl stop || true
		fi
		if ! rmq_plugins_enabled; then
			run_logged "$rlog" rabbitmq-plugins enable --offline "${RMQ_PLUGINS[@]}" ||
				{ rmq_logs; die "rabbitmq: rabbitmq-plugins enable --offline failed"; }
		fi
		run_logged "$rlog" rabbitmq-server -detached ||
			{ rmq_logs; die "rabbitmq: rabbitmq-server -detached failed"; }
		note "rabbitmq: (re)started"
	elif ! rmq_plugins_enabled || [[ -n "$(closed_ports "${RMQ_PORTS[@]}")" ]]; then
		log "rabbitmq: enabling plugins on the running broker"
		run_logged "$rlog" rabbitmq-plugins enable "${RMQ_PLUGINS[@]}" ||
			{ rmq_logs; die "rabbitmq: rabbitmq-plugins enable failed"; }
		note "rabbitmq: plugins enabled"
	fi

	if ! wait_ports 120 "${RMQ_PORTS[@]}"; then
		rmq_logs
		die "rabbitmq: ports not listening after 120 s: $(closed_ports "${RMQ_PORTS[@]}")"
	fi
}

###############################################################################################
# 2. Mosquitto
###############################################################################################
setup_mosquitto() {
	local mlog=$WORK_LOG_DIR/mosquitto.log
	if ! port_open "$MOSQUITTO_PORT"; then
		log "mosquitto: starting"
		# Without systemd nobody creates the pid file's directory.
		mkdir -p /run/mosquitto
		chown mosquitto: /run/mosquitto 2>/dev/null || true
		run_logged "$mlog" mosquitto -d -c "$MOSQUITTO_CONF" ||
			{ tail_log "$mlog"; tail_log /var/log/mosquitto/mosquitto.log; die "mosquitto: failed to start"; }
		if ! wait_ports 30 "$MOSQUITTO_PORT"; then
			tail_log "$mlog"
			tail_log /var/log/mosquitto/mosquitto.log
			die "mosquitto: port $MOSQUITTO_PORT not listening after 30 s"
		fi
		note "mosquitto: started"
	fi
}

###############################################################################################
# Protocol-level checks (no client tools needed)
###############################################################################################

# mqtt_connack PORT: CONNECT anonymously (MQTT 3.1.1, client id "tenv"); print the CONNACK bytes.
mqtt_connack() {
	timeout 5 bash -c '
		exec 3<>/dev/tcp/127.0.0.1/'"$1"'
		printf "\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04tenv" >&3
		head -c 4 <&3 | od -An -tx1
		printf "\xe0\x00" >&3 2>/dev/null || true
	' 2>/dev/null | tr -d ' \n' || true
}

# stomp_connected: log in to STOMP as guest; print the first line of the reply.
stomp_connected() {
	timeout 5 bash -c '
		exec 3<>/dev/tcp/127.0.0.1/61613
		printf "CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0" >&3
		head -n 1 <&3
	' 2>/dev/null | tr -d '\r' || true
}

management_ok() {
	curl -fsS --max-time 5 -u guest:guest -o /dev/null http://127.0.0.1:15672/api/overview 2>/dev/null
}

verify_brokers() {
	local got i
	got=$(mqtt_connack "$MOSQUITTO_PORT")
	[[ $got == 20020000 ]] ||
		die "mosquitto: anonymous MQTT CONNECT on 127.0.0.1:$MOSQUITTO_PORT was not accepted (CONNACK: '${got:-none}'); check $MOSQUITTO_CONF (needs a listener on 127.0.0.1:1883 with anonymous access, or no listener at all)"
	got=$(mqtt_connack 1884)
	[[ $got == 20020000 ]] ||
		die "rabbitmq: anonymous MQTT CONNECT on 127.0.0.1:1884 was not accepted (CONNACK: '${got:-none}')"
	got=$(stomp_connected)
	[[ $got == CONNECTED ]] ||
		die "rabbitmq: STOMP login guest/guest on 127.0.0.1:61613 failed (reply: '${got:-none}')"
	if command -v curl >/dev/null; then
		# the management listener may answer a moment before the API is ready
		for ((i = 0; i < 30; i++)); do
			management_ok && break
			sleep 1
		done
		management_ok || die "rabbitmq: GET http://127.0.0.1:15672/api/overview as guest/guest failed"
	fi
}

###############################################################################################
# 3+4. Private SLURM accounting stack
###############################################################################################
slurm_conf_text() {
	cat <<EOF
# Written by scripts/test-env.sh: private single-node SLURM for eventfn's tests.
ClusterName=$SLURM_CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageEnforce=associations,limits
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
MpiDefault=none
ReturnToService=2
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_RUN_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_RUN_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_LOG_DIR/slurmctld.log
SlurmdLogFile=$SLURM_LOG_DIR/slurmd.log
NodeName=localhost CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

slurmdbd_conf_text() {
	cat <<EOF
# Written by scripts/test-env.sh: private slurmdbd for eventfn's tests.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$DBD_LOG
PidFile=$DBD_PIDFILE
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
}

sacctmgr_() { SLURM_CONF=$SLURM_CONF_FILE timeout 20 sacctmgr "$@" </dev/null; }

# cluster_registered: sacctmgr answers and knows our cluster.
cluster_registered() {
	local out
	out=$(sacctmgr_ --parsable2 --noheader show cluster format=cluster 2>/dev/null) || return 1
	grep -qx "$SLURM_CLUSTER" <<<"$out"
}
sacctmgr_answers() { sacctmgr_ --parsable2 --noheader show cluster >/dev/null 2>&1; }

munge_ok() {
	munge -n -S "$MUNGE_SOCKET" 2>/dev/null </dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1
}
db_ok() {
	timeout 10 mariadb-admin --no-defaults -S "$DB_SOCKET" -uroot ping </dev/null >/dev/null 2>&1
}

slurm_write_configs() {
	local changed=1
	mkdir -p "$SLURM_DIR" "$SLURM_LOG_DIR" "$SLURM_RUN_DIR" "$SLURM_DIR/state" "$SLURM_DIR/spool" "$MUNGE_DIR" "$DB_DIR"
	chmod 755 "$SLURM_DIR" "$MUNGE_DIR"
	write_if_changed "$SLURM_CONF_FILE" 644 "$(slurm_conf_text)" && changed=0
	write_if_changed "$SLURMDBD_CONF_FILE" 600 "$(slurmdbd_conf_text)" && changed=0
	chown root: "$SLURMDBD_CONF_FILE"
	write_if_changed "$SLURM_ENV_FILE" 644 "SLURM_CONF=$SLURM_CONF_FILE" || true
	return $changed # 0 = something changed
}

ensure_munged() {
	munge_ok && return 0
	stop_ours munged
	if [[ ! -s $MUNGE_KEY ]]; then
		rm -f "$MUNGE_KEY"
		dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
	fi
	chown root: "$MUNGE_KEY"
	chmod 0400 "$MUNGE_KEY"
	rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGE_PIDFILE"
	log "slurm: starting munged ($MUNGE_SOCKET)"
	run_logged "$MUNGE_LOG" munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
		--pid-file="$MUNGE_PIDFILE" --seed-file="$MUNGE_SEED" --log-file="$MUNGE_LOG" ||
		{ tail_log "$MUNGE_LOG"; warn "slurm: munged failed to start"; return 1; }
	local i
	for ((i = 0; i < 40; i++)); do
		munge_ok && return 0
		sleep 0.25
	done
	tail_log "$MUNGE_LOG"
	warn "slurm: munged does not answer on $MUNGE_SOCKET"
	return 1
}

ensure_mariadb() {
	db_ok && return 0
	stop_ours mariadbd
	if port_open "$DB_PORT"; then
		warn "slurm: port $DB_PORT is taken by something other than the private MariaDB"
		return 1
	fi
	if [[ ! -d $DB_DATA/mysql ]]; then
		log "slurm: initialising MariaDB datadir $DB_DATA"
		rm -rf "$DB_DATA"
		mkdir -p "$DB_DATA"
		run_logged "$DB_LOG" mariadb-install-db --no-defaults --user=root --datadir="$DB_DATA" \
			--auth-root-authentication-method=socket --skip-test-db ||
			{ tail_log "$DB_LOG"; warn "slurm: mariadb-install-db failed"; return 1; }
	fi
	rm -f "$DB_SOCKET" "$DB_PIDFILE"
	log "slurm: starting MariaDB on 127.0.0.1:$DB_PORT"
	DB_RESTARTED=1
	spawn "$DB_LOG" mariadbd --no-defaults --user=root --datadir="$DB_DATA" \
		--socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$DB_PIDFILE" \
		--skip-name-resolve --skip-log-bin \
		--innodb-buffer-pool-size=1G --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
	local i
	for ((i = 0; i < 120; i++)); do
		db_ok && return 0
		sleep 0.5
	done
	tail_log "$DB_LOG"
	warn "slurm: MariaDB did not come up on $DB_SOCKET"
	return 1
}

ensure_db_grants() {
	timeout 30 mariadb --no-defaults -S "$DB_SOCKET" -uroot </dev/null -e "
		CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
		CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
		CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
		GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1';
		GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'localhost';
		FLUSH PRIVILEGES;" ||
		{ warn "slurm: could not create the slurm database/user in the private MariaDB"; return 1; }
}

start_slurmdbd() {
	stop_ours slurmdbd
	if port_open "$DBD_PORT"; then
		warn "slurm: port $DBD_PORT is taken by something other than the private slurmdbd"
		return 1
	fi
	rm -f "$DBD_PIDFILE"
	log "slurm: starting slurmdbd on 127.0.0.1:$DBD_PORT"
	run_logged "$DBD_LOG.stdout" env SLURM_CONF="$SLURM_CONF_FILE" slurmdbd ||
		{ tail_log "$DBD_LOG.stdout"; tail_log "$DBD_LOG"; warn "slurm: slurmdbd failed to start"; return 1; }
}

# wait_sacctmgr SECONDS
wait_sacctmgr() {
	local deadline=$((SECONDS + $1))
	while ((SECONDS < deadline)); do
		sacctmgr_answers && return 0
		sleep 0.5
	done
	return 1
}

# slurm_up CONF_CHANGED: bring up whatever is down. Runs in a subshell with set -e.
slurm_up() {
	local conf_changed=$1
	ensure_munged
	ensure_mariadb
	ensure_db_grants
	# A slurmdbd that outlived its database (or its configuration) is restarted as well.
	if ((conf_changed || DB_RESTARTED)) || ! pid_alive "$DBD_PIDFILE" slurmdbd || ! wait_sacctmgr 5; then
		start_slurmdbd
	fi
	if ! wait_sacctmgr 60; then
		tail_log "$DBD_LOG"
		warn "slurm: sacctmgr gets no answer from slurmdbd on port $DBD_PORT after 60 s"
		return 1
	fi
	if ! cluster_registered; then
		log "slurm: registering cluster $SLURM_CLUSTER"
		sacctmgr_ -i add cluster "$SLURM_CLUSTER" >/dev/null
		cluster_registered || {
			warn "slurm: cluster $SLURM_CLUSTER not listed after sacctmgr add cluster"
			return 1
		}
	fi
}

slurm_stop_all() {
	stop_ours slurmdbd
	stop_ours mariadbd
	stop_ours munged
}

setup_slurm() {
	local conf_changed=0 rc
	slurm_write_configs && conf_changed=1
	# Up and healthy: munged and MariaDB answer on their sockets (catches a deleted directory
	# under running daemons) and sacctmgr, through slurmdbd, lists the cluster.
	if ((!conf_changed)) && [[ -d $DB_DATA/mysql ]] && munge_ok && db_ok && cluster_registered; then
		return 0
	fi
	((conf_changed)) && log "slurm: configuration in $SLURM_DIR written"
	set +e
	(
		set -e
		slurm_up "$conf_changed"
	)
	rc=$?
	set -e
	if ((rc != 0)); then
		log "slurm: could not bring the existing stack up; retrying from a clean state"
		slurm_stop_all
		rm -rf "$SLURM_DIR"
		slurm_write_configs || true
		set +e
		(
			set -e
			slurm_up 1
		)
		rc=$?
		set -e
		((rc == 0)) || die "slurm: the private accounting stack in $SLURM_DIR could not be brought up (logs in $SLURM_LOG_DIR, $MUNGE_LOG)"
	fi
	note "slurm: accounting stack (re)started"
}

###############################################################################################
main() {
	[[ $(id -u) == 0 ]] || die "must run as root"
	install_packages
	setup_rabbitmq
	setup_mosquitto
	verify_brokers
	setup_slurm

	log "ready after ${SECONDS}s"
	if ((${#SUMMARY[@]})); then
		local s
		for s in "${SUMMARY[@]}"; do log "  changed: $s"; done
	else
		log "  nothing changed (everything was already up)"
	fi
	log "  RabbitMQ  amqp 127.0.0.1:5672  stomp :61613  web-stomp :15674/ws  mqtt :1884  web-mqtt :15675/ws  management :15672 (guest/guest)"
	log "  Mosquitto mqtt 127.0.0.1:$MOSQUITTO_PORT (anonymous)"
	log "  SLURM     cluster $SLURM_CLUSTER: slurmdbd 127.0.0.1:$DBD_PORT, MariaDB 127.0.0.1:$DB_PORT, munge $MUNGE_SOCKET"
	log "            use: SLURM_CONF=$SLURM_CONF_FILE (KEY=VALUE lines in $SLURM_ENV_FILE)"
}

main "$@"
