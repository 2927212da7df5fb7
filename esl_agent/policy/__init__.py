"""Dial policy, rendered FreeSWITCH/firewall config, audit trail."""
