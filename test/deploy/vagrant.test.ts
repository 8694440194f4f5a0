/**
 * The Vagrantfile passes `vagrant validate`. No VM boots here (no VirtualBox or
 * libvirt), so the provider blocks are left out of the check (--ignore-provider); the
 * box, synced folder and provisioners are validated. Vagrant's state goes to a scratch
 * dir, and its version check is off: nothing leaves the machine.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, run, tool } from './tools.js';

const vagrant = tool('vagrant', 'vagrant');

function validate(cwd: string) {
  const scratch = mkdtempSync('/tmp/interlock-vagrant-');
  try {
    return run(vagrant!, ['validate', '--ignore-provider', '--no-color'], {
      cwd,
      env: { ...process.env, VAGRANT_HOME: join(scratch, 'home'), VAGRANT_DOTFILE_PATH: join(scratch, 'dot'), VAGRANT_CHECKPOINT_DISABLE: '1' },
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

describe.skipIf(!vagrant)('Vagrantfile', () => {
  it('passes vagrant validate', () => {
    const r = validate(REPO);
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('Vagrantfile validated successfully');
  }, 60_000);

  it('is checked for real: a wrong provisioner setting fails validation', () => {
    const dir = mkdtempSync('/tmp/interlock-vagrantfile-');
    try {
      const text = readFileSync(join(REPO, 'Vagrantfile'), 'utf8').replace('ansible.playbook =', 'ansible.no_such_setting = 1\n    ansible.playbook =');
      writeFileSync(join(dir, 'Vagrantfile'), text);
      const r = validate(dir);
      expect(r.status).not.toBe(0);
      expect(`${r.stdout}${r.stderr}`).toContain('no_such_setting');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('provisions a Debian 12 VM with the playbook, from inside the VM', () => {
    const text = readFileSync(join(REPO, 'Vagrantfile'), 'utf8');
    expect(text).toContain('config.vm.box = "debian/bookworm64"');
    expect(text).toContain('provision "ansible_local"');
    expect(text).toContain('ansible.playbook = "deploy/ansible/vagrant.yml"');
  });
});
