/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The QEMU command line of one CVM launch (qemu.h): every field of struct qemu_vm is checked,
 * then the arguments are emitted in the order upstream dstack-vmm builds them (spec
 * kms-vmm-gateway.md §4.6): base (accel, cpu, console, QMP, firmware, kernel, globals),
 * rootfs, data disk, volumes, NICs, vsock, virtio-serial ports, host share, machine (+ the
 * tdx-guest object), -smp, -m, -append. Also the MAC derivation of the NICs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "qemu/qemu.h"
#include "qemu/qemu_check.h"

#define FIELD_LEN 64

static const char *const ACCEL_NAMES[] = { "tdx", "kvm", "tcg" };

const char *qemu_accel_name(enum qemu_accel accel)
{
	return (unsigned)accel < 3 ? ACCEL_NAMES[accel] : NULL;
}

int qemu_accel_parse(const char *name)
{
	for (int i = 0; name && i < 3; i++)
		if (strcmp(name, ACCEL_NAMES[i]) == 0)
			return i;
	return -1;
}

int qemu_mac_address(const char *vm_id, const uint8_t *prefix, size_t prefix_len, unsigned index,
		     char out[18])
{
	if (prefix_len > 3 || !vm_id)
		return -EINVAL;
	uint8_t hash[CRYPTO_SHA256_LEN];
	if (index == 0) {
		crypto_sha256(vm_id, strlen(vm_id), hash);
	} else {
		char *in = NULL;
		int n = asprintf(&in, "%s:%u", vm_id, index);
		if (n < 0)
			return -ENOMEM;
		crypto_sha256(in, (size_t)n, hash);
		free(in);
	}
	uint8_t b[6];
	for (size_t i = 0; i < 6; i++)
		b[i] = i < prefix_len ? prefix[i] : hash[i - prefix_len];
	b[0] = (uint8_t)((b[0] & 0xfe) | 0x02);
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
	return 0;
}

/* ---- validation ---- */

static bool is_one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

static int check_mac(struct qemu_error *err, const char *field, const char *s)
{
	static const char hex[] = "0123456789abcdefABCDEF";
	if (strlen(s) != 17)
		return qemu_bad(err, field, "must look like 52:54:00:12:34:56");
	for (int i = 0; i < 17; i++) {
		bool ok = i % 3 == 2 ? s[i] == ':' : strchr(hex, s[i]) != NULL;
		if (!ok)
			return qemu_bad(err, field, "must look like 52:54:00:12:34:56");
	}
	return 0;
}

static int check_cidr(struct qemu_error *err, const char *field, const char *s)
{
	char ip[16];
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(ip))
		return qemu_bad(err, field, "must be an IPv4 network such as 10.0.2.0/24");
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	char *end = NULL;
	long bits = strtol(slash + 1, &end, 10);
	if (qemu_check_ipv4(NULL, field, ip) < 0 || !slash[1] || *end || bits < 1 || bits > 30 ||
	    slash[1] == '+' || slash[1] == '-' || slash[1] == ' ')
		return qemu_bad(err, field, "must be an IPv4 network such as 10.0.2.0/24");
	return 0;
}

static int check_base64(struct qemu_error *err, const char *field, const char *s, size_t max)
{
	size_t len = strlen(s);
	if (len == 0 || len > max || len % 4)
		return qemu_bad(err, field, "must be base64 of at most %zu characters", max);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool pad = c == '=' && i >= len - 2 && (i == len - 1 || s[len - 1] == '=');
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/' || pad))
			return qemu_bad(err, field, "must be base64 of at most %zu characters",
					max);
	}
	return 0;
}

/* The QEMU binary: an absolute path, or a bare program name looked up on PATH. */
static int check_qemu(struct qemu_error *err, const char *s)
{
	if (!s || !*s)
		return qemu_bad(err, "qemu", "is required");
	if (s[0] == '/')
		return qemu_check_path(err, "qemu", s, QEMU_MAX_PATH);
	return qemu_check_name(err, "qemu", s, 255, "+");
}

static int check_opt_path(struct qemu_error *err, const char *field, const char *s, size_t max)
{
	return s ? qemu_check_path(err, field, s, max) : 0;
}

static int check_base(const struct qemu_vm *vm, struct qemu_error *err)
{
	static const char *const machines[] = { "pc", "q35", NULL };
	static const char *const formats[] = { "qcow2", "raw", NULL };
	int rc;
	if ((rc = check_qemu(err, vm->qemu)))
		return rc;
	if (!qemu_accel_name(vm->accel))
		return qemu_bad(err, "accel", "must be tdx, kvm or tcg");
	if (vm->machine && vm->accel != QEMU_ACCEL_TCG)
		return qemu_bad(err, "machine", "only for accel tcg (TDX and KVM use q35)");
	if (vm->machine && !is_one_of(vm->machine, machines))
		return qemu_bad(err, "machine", "must be pc or q35");
	if (vm->cpu && vm->accel == QEMU_ACCEL_TDX)
		return qemu_bad(err, "cpu", "a TDX guest runs with -cpu host");
	if (vm->cpu && (rc = qemu_check_name(err, "cpu", vm->cpu, 128, "+=,")))
		return rc;
	if (vm->vcpu < 1 || vm->vcpu > QEMU_MAX_VCPU)
		return qemu_bad(err, "vcpu", "must be 1..%d", QEMU_MAX_VCPU);
	if (vm->memory_mb < QEMU_MIN_MEMORY_MB || vm->memory_mb > QEMU_MAX_MEMORY_MB)
		return qemu_bad(err, "memory_mb", "must be %d..%d", QEMU_MIN_MEMORY_MB,
				QEMU_MAX_MEMORY_MB);
	if ((rc = qemu_check_path(err, "kernel", vm->kernel, QEMU_MAX_PATH)) ||
	    (rc = check_opt_path(err, "initrd", vm->initrd, QEMU_MAX_PATH)) ||
	    (rc = check_opt_path(err, "bios", vm->bios, QEMU_MAX_PATH)) ||
	    (rc = check_opt_path(err, "rootfs", vm->rootfs, QEMU_MAX_PATH)) ||
	    (rc = check_opt_path(err, "data_disk", vm->data_disk, QEMU_MAX_PATH)) ||
	    (rc = qemu_check_path(err, "serial_log", vm->serial_log, QEMU_MAX_PATH)) ||
	    (rc = check_opt_path(err, "serial_pty", vm->serial_pty, QEMU_MAX_PATH)) ||
	    (rc = check_opt_path(err, "qmp_socket", vm->qmp_socket, QEMU_MAX_SOCKET)))
		return rc;
	// QEMU splits -initrd on commas for multiboot kernels: refused rather than guessed at.
	if (vm->initrd && strchr(vm->initrd, ','))
		return qemu_bad(err, "initrd", "must not contain a comma");
	if (vm->cmdline && (rc = qemu_check_text(err, "cmdline", vm->cmdline, QEMU_MAX_CMDLINE)))
		return rc;
	if (vm->data_disk_format && !vm->data_disk)
		return qemu_bad(err, "data_disk_format", "given without data_disk");
	if (vm->data_disk_format && !is_one_of(vm->data_disk_format, formats))
		return qemu_bad(err, "data_disk_format", "must be qcow2 or raw");
	if (vm->nvolumes > QEMU_MAX_VOLUMES)
		return qemu_bad(err, "volumes", "more than %d", QEMU_MAX_VOLUMES);
	for (size_t i = 0; i < vm->nvolumes; i++) {
		char f[FIELD_LEN];
		snprintf(f, sizeof(f), "volumes[%zu]", i + 1);
		if ((rc = qemu_check_path(err, f, vm->volumes ? vm->volumes[i] : NULL,
					  QEMU_MAX_PATH)))
			return rc;
	}
	if (vm->vsock_cid && (vm->vsock_cid < 3 || vm->vsock_cid > 0xfffffffeu))
		return qemu_bad(err, "vsock_cid", "must be 3..4294967294 (0: no vsock device)");
	if (vm->accel != QEMU_ACCEL_TDX && vm->mrconfigid)
		return qemu_bad(err, "mrconfigid", "only for accel tdx");
	if (vm->accel != QEMU_ACCEL_TDX && vm->qgs_port)
		return qemu_bad(err, "qgs_port", "only for accel tdx");
	if (vm->mrconfigid && (rc = check_base64(err, "mrconfigid", vm->mrconfigid, 64)))
		return rc;
	return 0;
}

static int check_share(const struct qemu_share *s, struct qemu_error *err)
{
	static const char *const models[] = { "mapped",	      "none",	     "passthrough",
					      "mapped-xattr", "mapped-file", NULL };
	int rc;
	if (s->mode == QEMU_SHARE_NONE) {
		if (s->path || s->security_model || s->label)
			return qemu_bad(err, "share.mode", "is required with share.path");
		return 0;
	}
	if (s->mode != QEMU_SHARE_9P && s->mode != QEMU_SHARE_VVFAT && s->mode != QEMU_SHARE_VHD)
		return qemu_bad(err, "share.mode", "must be 9p, vvfat or vhd");
	if ((rc = qemu_check_path(err, "share.path", s->path, QEMU_MAX_PATH)))
		return rc;
	if (s->security_model && s->mode != QEMU_SHARE_9P)
		return qemu_bad(err, "share.security_model", "only for mode 9p");
	if (s->security_model && !is_one_of(s->security_model, models))
		return qemu_bad(err, "share.security_model",
				"must be mapped, none, passthrough, mapped-xattr or mapped-file");
	if (s->readonly && s->mode != QEMU_SHARE_9P)
		return qemu_bad(err, "share.readonly",
				"only for mode 9p (vvfat and vhd are read-only)");
	if (s->label && s->mode != QEMU_SHARE_VVFAT)
		return qemu_bad(err, "share.label", "only for mode vvfat");
	if (s->label && (rc = qemu_check_name(err, "share.label", s->label, 11, NULL)))
		return rc;
	return 0;
}

static int check_nic(const struct qemu_nic *n, size_t i, struct qemu_error *err)
{
	char f[FIELD_LEN];
	int rc;
#define NIC_FIELD(name) (snprintf(f, sizeof(f), "nics[%zu]." name, i + 1), f)
	if (n->mode != QEMU_NIC_USER && (n->restrict_net || n->net || n->dhcp_start))
		return qemu_bad(err, NIC_FIELD("mode"),
				"restrict, net and dhcp_start are for mode user");
	if (n->mode != QEMU_NIC_TAP && n->ifname)
		return qemu_bad(err, NIC_FIELD("ifname"), "only for mode tap");
	if (n->mode != QEMU_NIC_BRIDGE && n->bridge)
		return qemu_bad(err, NIC_FIELD("bridge"), "only for mode bridge");
	switch (n->mode) {
	case QEMU_NIC_USER:
		if (n->net && (rc = check_cidr(err, NIC_FIELD("net"), n->net)))
			return rc;
		if (n->dhcp_start &&
		    (rc = qemu_check_ipv4(err, NIC_FIELD("dhcp_start"), n->dhcp_start)))
			return rc;
		break;
	case QEMU_NIC_TAP:
		if ((rc = qemu_check_name(err, NIC_FIELD("ifname"), n->ifname, 15, NULL)))
			return rc;
		break;
	case QEMU_NIC_BRIDGE:
		if ((rc = qemu_check_name(err, NIC_FIELD("bridge"), n->bridge, 15, NULL)))
			return rc;
		break;
	default:
		return qemu_bad(err, NIC_FIELD("mode"), "must be user, tap or bridge");
	}
	if (n->mac && (rc = check_mac(err, NIC_FIELD("mac"), n->mac)))
		return rc;
#undef NIC_FIELD
	return 0;
}

static int first_user_nic(const struct qemu_vm *vm)
{
	for (size_t i = 0; i < vm->nnics; i++)
		if (vm->nics[i].mode == QEMU_NIC_USER)
			return (int)i;
	return -1;
}

static bool same(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

static int check_ports(const struct qemu_vm *vm, struct qemu_error *err)
{
	static const char *const protos[] = { "tcp", "udp", NULL };
	if (vm->nports > QEMU_MAX_PORTS)
		return qemu_bad(err, "ports", "more than %d", QEMU_MAX_PORTS);
	if (vm->nports && first_user_nic(vm) < 0)
		return qemu_bad(err, "ports", "need a NIC of mode user to forward on");
	for (size_t i = 0; i < vm->nports; i++) {
		const struct qemu_port *p = &vm->ports[i];
		char f[FIELD_LEN];
		int rc;
#define PORT_FIELD(name) (snprintf(f, sizeof(f), "ports[%zu]." name, i + 1), f)
		if (!p->protocol || !is_one_of(p->protocol, protos))
			return qemu_bad(err, PORT_FIELD("protocol"), "must be tcp or udp");
		if (p->host_address && *p->host_address &&
		    (rc = qemu_check_ipv4(err, PORT_FIELD("host_address"), p->host_address)))
			return rc;
		if (p->host_port < 1 || p->host_port > 65535)
			return qemu_bad(err, PORT_FIELD("host_port"), "must be 1..65535");
		if (p->vm_port < 1 || p->vm_port > 65535)
			return qemu_bad(err, PORT_FIELD("vm_port"), "must be 1..65535");
		for (size_t j = 0; j < i; j++) {
			const struct qemu_port *q = &vm->ports[j];
			if (strcmp(p->protocol, q->protocol) == 0 && p->host_port == q->host_port &&
			    same(p->host_address, q->host_address))
				return qemu_bad(
					err, PORT_FIELD("host_port"),
					"%s %s:%u is already forwarded by ports[%zu]", p->protocol,
					p->host_address && *p->host_address ? p->host_address : "*",
					p->host_port, j + 1);
		}
#undef PORT_FIELD
	}
	return 0;
}

static int check_serial_ports(const struct qemu_vm *vm, struct qemu_error *err)
{
	if (vm->nserial_ports > QEMU_MAX_SERIAL_PORTS)
		return qemu_bad(err, "serial_ports", "more than %d", QEMU_MAX_SERIAL_PORTS);
	for (size_t i = 0; i < vm->nserial_ports; i++) {
		const struct qemu_serial_port *p = &vm->serial_ports[i];
		char f[FIELD_LEN];
		int rc;
		snprintf(f, sizeof(f), "serial_ports[%zu].name", i + 1);
		if ((rc = qemu_check_name(err, f, p->name, 64, NULL)))
			return rc;
		snprintf(f, sizeof(f), "serial_ports[%zu].path", i + 1);
		if ((rc = qemu_check_path(err, f, p->path, QEMU_MAX_SOCKET)))
			return rc;
		if (vm->qmp_socket && strcmp(p->path, vm->qmp_socket) == 0)
			return qemu_bad(err, f, "is the qmp_socket too");
		for (size_t j = 0; j < i; j++) {
			if (strcmp(p->path, vm->serial_ports[j].path) == 0)
				return qemu_bad(err, f, "is serial_ports[%zu]'s too", j + 1);
			if (strcmp(p->name, vm->serial_ports[j].name) == 0) {
				snprintf(f, sizeof(f), "serial_ports[%zu].name", i + 1);
				return qemu_bad(err, f, "is serial_ports[%zu]'s too", j + 1);
			}
		}
	}
	return 0;
}

static int validate(const struct qemu_vm *vm, struct qemu_error *err)
{
	int rc;
	if ((rc = check_base(vm, err)) || (rc = check_share(&vm->share, err)))
		return rc;
	if (vm->nnics > QEMU_MAX_NICS)
		return qemu_bad(err, "nics", "more than %d", QEMU_MAX_NICS);
	if (vm->mac_prefix_len > 3)
		return qemu_bad(err, "mac_prefix", "at most 3 bytes");
	bool derive = false;
	for (size_t i = 0; i < vm->nnics; i++) {
		if ((rc = check_nic(&vm->nics[i], i, err)))
			return rc;
		derive = derive || !vm->nics[i].mac;
	}
	if (derive && (!vm->vm_id || !*vm->vm_id))
		return qemu_bad(err, "vm_id", "is required to derive the NICs' MAC addresses");
	if (vm->vm_id && (rc = qemu_check_text(err, "vm_id", vm->vm_id, QEMU_MAX_ID)))
		return rc;
	if ((rc = check_ports(vm, err)) || (rc = check_serial_ports(vm, err)))
		return rc;
	return 0;
}

/* ---- emission ---- */

/* Paths inside QEMU option lists, commas doubled. Owned copies, freed with the builder. */
struct esc {
	char *s[64];
	size_t n;
	bool oom;
};

static const char *esc(struct esc *e, const char *path)
{
	size_t commas = 0;
	for (const char *p = path; *p; p++)
		commas += *p == ',';
	char *out = e->n < 64 ? malloc(strlen(path) + commas + 1) : NULL;
	if (!out) {
		e->oom = true;
		return "";
	}
	char *o = out;
	for (const char *p = path; *p; p++) {
		*o++ = *p;
		if (*p == ',')
			*o++ = ',';
	}
	*o = '\0';
	e->s[e->n++] = out;
	return out;
}

static void esc_free(struct esc *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->s[i]);
	e->n = 0;
}

static void emit_base(const struct qemu_vm *vm, struct qemu_argb *b, struct esc *e)
{
	qemu_argb_add(b, vm->qemu);
	if (vm->accel == QEMU_ACCEL_TCG) {
		qemu_argb_add(b, "-accel");
		qemu_argb_add(b, "tcg");
		if (vm->cpu) {
			qemu_argb_add(b, "-cpu");
			qemu_argb_add(b, vm->cpu);
		}
	} else {
		qemu_argb_add(b, "-accel");
		qemu_argb_add(b, "kvm");
		qemu_argb_add(b, "-cpu");
		qemu_argb_add(b, vm->cpu ? vm->cpu : "host");
	}
	qemu_argb_add(b, "-nographic");
	qemu_argb_add(b, "-nodefaults");
	if (vm->no_reboot)
		qemu_argb_add(b, "-no-reboot");
	qemu_argb_add(b, "-chardev");
	if (vm->serial_pty)
		qemu_argb_addf(b, "pty,id=com0,path=%s,logfile=%s,logappend=on",
			       esc(e, vm->serial_pty), esc(e, vm->serial_log));
	else
		qemu_argb_addf(b, "file,id=com0,path=%s,append=on", esc(e, vm->serial_log));
	qemu_argb_add(b, "-serial");
	qemu_argb_add(b, "chardev:com0");
	if (vm->qmp_socket) {
		qemu_argb_add(b, "-qmp");
		qemu_argb_addf(b, "unix:%s,server=on,wait=off", esc(e, vm->qmp_socket));
	}
	if (vm->bios) {
		qemu_argb_add(b, "-bios");
		qemu_argb_add(b, vm->bios);
	}
	qemu_argb_add(b, "-kernel");
	qemu_argb_add(b, vm->kernel);
	if (vm->initrd) {
		qemu_argb_add(b, "-initrd");
		qemu_argb_add(b, vm->initrd);
	}
	if (vm->hotplug_off) {
		qemu_argb_add(b, "-global");
		qemu_argb_add(b, "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off");
	}
	if (vm->pci_hole64_size) {
		qemu_argb_add(b, "-global");
		qemu_argb_addf(b, "q35-pcihost.pci-hole64-size=0x%llx",
			       (unsigned long long)vm->pci_hole64_size);
	}
}

static void emit_disks(const struct qemu_vm *vm, struct qemu_argb *b, struct esc *e)
{
	if (vm->rootfs) {
		qemu_argb_add(b, "-drive");
		qemu_argb_addf(b, "file=%s,if=none,id=hd0,format=raw,readonly=on",
			       esc(e, vm->rootfs));
		qemu_argb_add(b, "-device");
		qemu_argb_add(b, "virtio-blk-pci,drive=hd0");
	}
	if (vm->data_disk) {
		qemu_argb_add(b, "-drive");
		qemu_argb_addf(b, "file=%s,if=none,id=hd1%s%s", esc(e, vm->data_disk),
			       vm->data_disk_format ? ",format=" : "",
			       vm->data_disk_format ? vm->data_disk_format : "");
		qemu_argb_add(b, "-device");
		qemu_argb_add(b, "virtio-blk-pci,drive=hd1");
	}
	for (size_t i = 0; i < vm->nvolumes; i++) {
		qemu_argb_add(b, "-drive");
		qemu_argb_addf(b, "file=%s,if=none,id=vol%zu,format=raw,readonly=on",
			       esc(e, vm->volumes[i]), i);
		qemu_argb_add(b, "-device");
		qemu_argb_addf(b, "virtio-blk-pci,drive=vol%zu", i);
	}
}

/* The user-mode netdev of NIC @p i: net, dhcpstart, restrict, then the host forwards. */
static char *user_netdev(const struct qemu_vm *vm, size_t i, bool forwards)
{
	const struct qemu_nic *n = &vm->nics[i];
	size_t cap = 128 + vm->nports * 48;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	size_t off = (size_t)snprintf(s, cap, "user,id=net%zu", i);
	if (n->net)
		off += (size_t)snprintf(s + off, cap - off, ",net=%s", n->net);
	if (n->dhcp_start)
		off += (size_t)snprintf(s + off, cap - off, ",dhcpstart=%s", n->dhcp_start);
	off += (size_t)snprintf(s + off, cap - off, ",restrict=%s", n->restrict_net ? "yes" : "no");
	for (size_t j = 0; forwards && j < vm->nports; j++) {
		const struct qemu_port *p = &vm->ports[j];
		off += (size_t)snprintf(s + off, cap - off, ",hostfwd=%s:%s:%u-:%u", p->protocol,
					p->host_address ? p->host_address : "", p->host_port,
					p->vm_port);
	}
	return s;
}

static void emit_nics(const struct qemu_vm *vm, struct qemu_argb *b)
{
	int fwd = first_user_nic(vm);
	for (size_t i = 0; i < vm->nnics; i++) {
		const struct qemu_nic *n = &vm->nics[i];
		char mac[18];
		if (n->mac)
			snprintf(mac, sizeof(mac), "%s", n->mac);
		else if (qemu_mac_address(vm->vm_id, vm->mac_prefix, vm->mac_prefix_len,
					  (unsigned)i, mac) < 0)
			b->oom = true; // validated above: only an allocation can fail
		qemu_argb_add(b, "-netdev");
		if (n->mode == QEMU_NIC_USER) {
			char *s = user_netdev(vm, i, (int)i == fwd);
			if (s)
				qemu_argb_add(b, s);
			else
				b->oom = true;
			free(s);
		} else if (n->mode == QEMU_NIC_TAP) {
			qemu_argb_addf(b,
				       "tap,id=net%zu,ifname=%s,script=no,downscript=no,vhost=off",
				       i, n->ifname);
		} else {
			qemu_argb_addf(b, "bridge,id=net%zu,br=%s", i, n->bridge);
		}
		qemu_argb_add(b, "-device");
		qemu_argb_addf(b, "virtio-net-pci,netdev=net%zu,mac=%s", i, mac);
	}
}

static void emit_channels(const struct qemu_vm *vm, struct qemu_argb *b, struct esc *e)
{
	if (vm->vsock_cid) {
		qemu_argb_add(b, "-device");
		qemu_argb_addf(b, "vhost-vsock-pci,guest-cid=%u", vm->vsock_cid);
	}
	if (vm->nserial_ports) {
		qemu_argb_add(b, "-device");
		qemu_argb_add(b, "virtio-serial-pci");
	}
	for (size_t i = 0; i < vm->nserial_ports; i++) {
		const struct qemu_serial_port *p = &vm->serial_ports[i];
		qemu_argb_add(b, "-chardev");
		if (p->server)
			qemu_argb_addf(b, "socket,id=ch%zu,path=%s,server=on,wait=off", i,
				       esc(e, p->path));
		else // QEMU refuses wait= on a client; reconnect=1 retries every second
			qemu_argb_addf(b, "socket,id=ch%zu,path=%s,server=off,reconnect=1", i,
				       esc(e, p->path));
		qemu_argb_add(b, "-device");
		qemu_argb_addf(b, "virtserialport,chardev=ch%zu,name=%s", i, p->name);
	}
}

static void emit_share(const struct qemu_vm *vm, struct qemu_argb *b, struct esc *e)
{
	const struct qemu_share *s = &vm->share;
	switch (s->mode) {
	case QEMU_SHARE_9P:
		qemu_argb_add(b, "-virtfs");
		qemu_argb_addf(b,
			       "local,path=%s,mount_tag=host-shared,readonly=%s,security_model=%s,"
			       "id=virtfs0",
			       esc(e, s->path), s->readonly ? "on" : "off",
			       s->security_model ? s->security_model : "mapped");
		break;
	case QEMU_SHARE_VVFAT:
		qemu_argb_add(b, "-blockdev");
		qemu_argb_addf(b, "driver=vvfat,node-name=vvfat0,read-only=on,dir=%s,label=%s",
			       esc(e, s->path), s->label ? s->label : "DSTACKSHR");
		qemu_argb_add(b, "-device");
		qemu_argb_add(b, "virtio-blk-pci,drive=vvfat0");
		break;
	case QEMU_SHARE_VHD:
		qemu_argb_add(b, "-drive");
		qemu_argb_addf(b, "file=%s,if=none,id=hd2,format=raw,readonly=on", esc(e, s->path));
		qemu_argb_add(b, "-device");
		qemu_argb_add(b, "virtio-blk-pci,drive=hd2");
		break;
	default:
		break;
	}
}

/* The tdx-guest object in QEMU's JSON form, keys left out when unset (as upstream). */
static void emit_tdx_object(const struct qemu_vm *vm, struct qemu_argb *b)
{
	char mr[96] = "", qgs[128] = "";
	if (vm->mrconfigid)
		snprintf(mr, sizeof(mr), ",\"mrconfigid\":\"%s\"", vm->mrconfigid);
	if (vm->qgs_port)
		snprintf(qgs, sizeof(qgs),
			 ",\"quote-generation-socket\":{\"type\":\"vsock\",\"cid\":\"2\",\"port\":"
			 "\"%u\"}",
			 vm->qgs_port);
	qemu_argb_add(b, "-object");
	qemu_argb_addf(b, "{\"qom-type\":\"tdx-guest\",\"id\":\"tdx\"%s%s}", mr, qgs);
}

static void emit_machine(const struct qemu_vm *vm, struct qemu_argb *b)
{
	qemu_argb_add(b, "-machine");
	switch (vm->accel) {
	case QEMU_ACCEL_TDX:
		qemu_argb_add(b,
			      "q35,kernel-irqchip=split,confidential-guest-support=tdx,hpet=off");
		emit_tdx_object(vm, b);
		break;
	case QEMU_ACCEL_KVM:
		qemu_argb_add(b, "q35,kernel-irqchip=split,hpet=off");
		break;
	default:
		qemu_argb_add(b, vm->machine ? vm->machine : "pc");
		break;
	}
	qemu_argb_add(b, "-smp");
	qemu_argb_addf(b, "%u", vm->vcpu);
	qemu_argb_add(b, "-m");
	qemu_argb_addf(b, "%uM", vm->memory_mb);
	if (vm->cmdline) {
		qemu_argb_add(b, "-append");
		qemu_argb_add(b, vm->cmdline);
	}
}

int qemu_build_argv(const struct qemu_vm *vm, struct qemu_argv *out, struct qemu_error *err)
{
	*out = (struct qemu_argv){ 0 };
	if (!vm)
		return qemu_bad(err, "vm", "is required");
	int rc = validate(vm, err);
	if (rc)
		return rc;
	struct qemu_argb b = { 0 };
	struct esc e = { 0 };
	emit_base(vm, &b, &e);
	emit_disks(vm, &b, &e);
	emit_nics(vm, &b);
	emit_channels(vm, &b, &e);
	emit_share(vm, &b, &e);
	emit_machine(vm, &b);
	b.oom = b.oom || e.oom;
	esc_free(&e);
	return qemu_argb_finish(&b, out, err);
}
