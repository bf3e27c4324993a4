/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The accelerator probe's pieces (qemu.h): the probe guest, its command line, and whether the
 * host reports TDX. The probe itself (spawn, deadline, kill) runs in Lua (lua/moonstack/qemu).
 *
 * Why a guest at all: /dev/kvm opening proves nothing. On the development machines KVM is
 * PVM, which traps a stock guest's every instruction: SeaBIOS still runs, but a kernel's
 * decompressor never finishes. The probe guest does what such a kernel does first (long mode,
 * paging, a tight loop of 10^8 iterations) and then tells QEMU to exit with status 85. KVM
 * proper finishes in tens of milliseconds after firmware, TCG in about 0.3 s, PVM in minutes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qemu/qemu.h"
#include "qemu/qemu_check.h"

/*
 * The probe guest, assembled from this source (GNU as --32, ld -Ttext 0x100000
 * --oformat binary):
 *
 *	multiboot header: 0x1BADB002, flags 0x00010000 (a.out kludge), checksum,
 *	header_addr = load_addr = 0x100000, load_end_addr = bss_end_addr = 0, entry_addr
 *   entry (32-bit protected mode, paging off):
 *	cli
 *	movl $0x200000, %edi; xorl %eax, %eax; movl $3072, %ecx; rep stosl  # zero the tables
 *	movl $0x201003, 0x200000	# PML4[0] -> PDPT
 *	movl $0x202003, 0x201000	# PDPT[0] -> PD
 *	movl $0x000083, 0x202000	# PD[0]: a 2 MiB identity page
 *	movl %cr4, %eax; orl $0x20, %eax; movl %eax, %cr4		# PAE
 *	movl $0x200000, %eax; movl %eax, %cr3
 *	movl $0xC0000080, %ecx; rdmsr; orl $0x100, %eax; wrmsr		# EFER.LME
 *	lgdt gdtr
 *	movl %cr0, %eax; orl $0x80000001, %eax; movl %eax, %cr0	# PG | PE
 *	ljmp $0x08, $long64
 *   long64 (64-bit):
 *	movl $100000000, %ecx
 *   1:	decl %ecx; jnz 1b
 *	movb $0x2a, %al; outb %al, $0xf4	# isa-debug-exit: status (0x2a << 1) | 1 = 85
 *   2:	hlt; jmp 2b
 *   gdt: .quad 0, 0x00AF9A000000FFFF (64-bit code); gdtr: .word 15, .long gdt
 */
static const uint8_t PAYLOAD[] = {
	0x02, 0xb0, 0xad, 0x1b, 0x00, 0x00, 0x01, 0x00, 0xfe, 0x4f, 0x51, 0xe4, 0x00, 0x00, 0x10,
	0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00,
	0x10, 0x00, 0xfa, 0xbf, 0x00, 0x00, 0x20, 0x00, 0x31, 0xc0, 0xb9, 0x00, 0x0c, 0x00, 0x00,
	0xf3, 0xab, 0xc7, 0x05, 0x00, 0x00, 0x20, 0x00, 0x03, 0x10, 0x20, 0x00, 0xc7, 0x05, 0x00,
	0x10, 0x20, 0x00, 0x03, 0x20, 0x20, 0x00, 0xc7, 0x05, 0x00, 0x20, 0x20, 0x00, 0x83, 0x00,
	0x00, 0x00, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x00, 0x20,
	0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00,
	0x00, 0x0f, 0x30, 0x0f, 0x01, 0x15, 0xa8, 0x00, 0x10, 0x00, 0x0f, 0x20, 0xc0, 0x0d, 0x01,
	0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0x85, 0x00, 0x10, 0x00, 0x08, 0x00, 0xb9, 0x00,
	0xe1, 0xf5, 0x05, 0xff, 0xc9, 0x75, 0xfc, 0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd, 0x8d,
	0x76, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00,
	0x9a, 0xaf, 0x00, 0x0f, 0x00, 0x98, 0x00, 0x10, 0x00
};

const uint8_t *qemu_probe_payload(size_t *len)
{
	*len = sizeof(PAYLOAD);
	return PAYLOAD;
}

int qemu_probe_write_payload(const char *path, struct qemu_error *err)
{
	int rc = qemu_check_path(err, "path", path, QEMU_MAX_PATH);
	if (rc)
		return rc;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		return qemu_fail(err, e, e == EEXIST ? "EEXIST" : "EIO", "cannot create %s: %s",
				 path, strerror(e));
	}
	ssize_t n = write(fd, PAYLOAD, sizeof(PAYLOAD));
	int e = n < 0 ? errno : EIO;
	if (close(fd) < 0 && n == (ssize_t)sizeof(PAYLOAD)) {
		n = -1;
		e = errno;
	}
	if (n != (ssize_t)sizeof(PAYLOAD)) {
		unlink(path);
		return qemu_fail(err, e, "EIO", "cannot write %s: %s", path, strerror(e));
	}
	return 0;
}

int qemu_probe_argv(const char *qemu, const char *accel, const char *kernel, struct qemu_argv *out,
		    struct qemu_error *err)
{
	*out = (struct qemu_argv){ 0 };
	int rc;
	if (!qemu || !*qemu)
		return qemu_bad(err, "qemu", "is required");
	if ((rc = qemu[0] == '/' ? qemu_check_path(err, "qemu", qemu, QEMU_MAX_PATH)
				 : qemu_check_name(err, "qemu", qemu, 255, "+")))
		return rc;
	if (!accel || (strcmp(accel, "kvm") != 0 && strcmp(accel, "tcg") != 0))
		return qemu_bad(err, "accel", "must be kvm or tcg");
	if ((rc = qemu_check_path(err, "kernel", kernel, QEMU_MAX_PATH)))
		return rc;
	struct qemu_argb b = { 0 };
	qemu_argb_add(&b, qemu);
	qemu_argb_add(&b, "-accel");
	qemu_argb_add(&b, accel);
	if (strcmp(accel, "kvm") == 0) { // the CPU model the launches use
		qemu_argb_add(&b, "-cpu");
		qemu_argb_add(&b, "host");
	}
	static const char *const rest[] = {
		"-machine", "pc",	  "-m",		 "32",
		"-smp",	    "1",	  "-nodefaults", "-display",
		"none",	    "-no-reboot", "-device",	 "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel"
	};
	for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
		qemu_argb_add(&b, rest[i]);
	qemu_argb_add(&b, kernel);
	return qemu_argb_finish(&b, out, err);
}

int qemu_host_tdx(const char *sysfs_root, struct qemu_error *err)
{
	char path[QEMU_MAX_PATH + 1];
	int n = snprintf(path, sizeof(path), "%s/sys/module/kvm_intel/parameters/tdx",
			 sysfs_root ? sysfs_root : "");
	if (n < 0 || (size_t)n >= sizeof(path))
		return qemu_bad(err, "sysfs_root", "too long");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR)
			return 0;
		return qemu_fail(err, e, "EIO", "cannot open %s: %s", path, strerror(e));
	}
	char buf[8] = "";
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	int e = errno;
	close(fd);
	if (r < 0)
		return qemu_fail(err, e, "EIO", "cannot read %s: %s", path, strerror(e));
	return buf[0] == 'Y' || buf[0] == 'y' || buf[0] == '1';
}
