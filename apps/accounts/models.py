"""Accounts use Django's User and Group (roles) and guardian's object permissions (tenant
grants); this module has no tables of its own but makes the app take part in migrate, whose
post-migrate step keeps the role groups in line with ``roles.ROLE_PERMISSIONS``."""
