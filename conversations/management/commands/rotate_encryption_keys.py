"""Re-encrypts every stored API key under the first of FIELD_ENCRYPTION_KEYS.

To change the encryption key: put a new key first in FIELD_ENCRYPTION_KEYS (keep the
old one after it), run this command, then remove the old key.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from conversations.keys import vault
from conversations.models import ApiKey, SiteSettings


class Command(BaseCommand):
    help = "Re-encrypt every stored API key under the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        try:
            with transaction.atomic():
                count = 0
                for key in ApiKey.objects.select_for_update().only("pk", "ciphertext"):
                    key.ciphertext = vault.rotate(key.ciphertext)
                    key.save(update_fields=["ciphertext"])
                    count += 1
                for site in SiteSettings.objects.select_for_update().exclude(shared_key_ciphertext=""):
                    site.shared_key_ciphertext = vault.rotate(site.shared_key_ciphertext)
                    site.save(update_fields=["shared_key_ciphertext"])
                    count += 1
        except vault.UndecryptableKey as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        self.stdout.write(f"Re-encrypted {count} key(s) under the first of FIELD_ENCRYPTION_KEYS.")
