"""Backups in a real browser against real processes: a platform admin's Back up now, followed live on the page
(the row turns Succeeded and verified without a reload) while the worker makes and verifies the backup; a tenant
owner's Export my data from the dashboard, with the emailed link, ending in a downloaded zip."""
import zipfile

import pytest
from playwright.sync_api import expect

from . import live
from .live import TIMEOUT_MS, log_in, new_page

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def backup_paths(tmp_path, monkeypatch):
    """The live processes keep backups, media and device stores in this test's folder, with a passphrase of its own
    (LiveSystem copies the environment when it starts)."""
    for name, folder in (("BACKUP_DIR", "backups"), ("MEDIA_ROOT", "media"), ("WHATSAPP_STORE_DIR", "stores")):
        monkeypatch.setenv(name, str(tmp_path / folder))
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "browser test passphrase")
    return tmp_path


@pytest.fixture
def live_whatsapp(backup_paths):
    return None  # no session host; depending on backup_paths sets the environment before the processes start


def test_back_up_now_with_live_progress_and_a_tenants_export(live_system, launch_chromium, named, tmp_path):
    from backups.models import Backup

    browser = launch_chromium()
    admin = new_page(browser, live_system)
    log_in(admin, named.admin.email)
    admin.goto("/platform/backups/")
    expect(admin.get_by_role("heading", name="Backups", exact=True, level=1)).to_be_visible()
    admin.evaluate("window.notReloaded = true")
    admin.get_by_label("What").select_option("tenant")
    admin.get_by_label("Tenant").select_option(label="Acme (acme)")
    admin.get_by_test_id("backup-now").click()
    expect(admin.locator(".msg.success")).to_contain_text("started")
    backup = live.outside_event_loop(lambda: Backup.objects.get())
    row = admin.get_by_test_id(f"backup-{backup.pk}")
    admin.evaluate("window.notReloaded = true")
    expect(row.locator('[data-field="status"]')).to_have_text("Succeeded", timeout=60_000)
    expect(row.locator('[data-field="verified"]')).not_to_have_text("—", timeout=60_000)
    expect(row.locator('[data-field="sha256"]')).not_to_have_text("")
    download = row.get_by_role("link", name="Download")
    expect(download).to_have_attribute("href", f"/platform/backups/{backup.pk}/download")
    assert admin.evaluate("window.notReloaded") is True  # followed over the socket, not by reloading
    done = live.outside_event_loop(lambda: Backup.objects.get(pk=backup.pk))
    assert done.verified_at is not None and done.status == "succeeded", (done.error, done.verification_error)

    owner = new_page(browser, live_system)
    log_in(owner, named.alice.email)
    expect(owner.get_by_test_id("dashboard-title")).to_have_text("Acme")
    owner.get_by_test_id("export-my-data").click()
    owner.get_by_test_id("export-now").click()
    expect(owner.locator(".msg.success")).to_contain_text("being prepared")
    expect(owner.get_by_test_id("export-download")).to_be_visible(timeout=60_000)
    email = live_system.mailbox.wait_for(to=named.alice.email, subject_contains="export is ready")
    link = live_system.mailbox.link(email, r"http://\S+/data-export/\d+/download\?token=\S+")
    with owner.expect_download() as download_info:
        owner.evaluate("url => { window.location.href = url; }", link)
    path = tmp_path / "export.zip"
    download_info.value.save_as(path)
    names = zipfile.ZipFile(path).namelist()
    assert "workspace.json" in names and "whatsapp/message.json" in names

    # Bob is a member, not the owner: no export for him.
    member = new_page(browser, live_system)
    log_in(member, named.bob.email)
    expect(member.get_by_test_id("dashboard-title")).to_have_text("Acme")
    expect(member.get_by_test_id("export-my-data")).to_have_count(0)
    assert member.goto("/data-export/").status == 404
