-- Countly SDK request signing: the app's salt for checksum256 (NULL: not required).
ALTER TABLE apps ADD COLUMN countly_salt TEXT;
