"""The DDS settings a launch exports: ``dds_profile`` as given, or restricted to interfaces and peers.

``dds_interfaces:=10.0.0.5`` keeps Fast DDS's UDP traffic on those local addresses and loopback (the profile's
interfaceWhiteList): a camera LAN or an uplink the robot also has never carries intradp_ros traffic.
``dds_peers:=10.0.0.9`` limits discovery to this host and the listed peers, the ROS way (Jazzy and later):
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and ``ROS_STATIC_PEERS``. Measured in network namespaces: a Fast DDS
initialPeersList alone does not do it under Jazzy (the participant still announced itself to the multicast
group, and a stranger on the subnet answered), and ``OFF`` with static peers discovered nothing at all.

A host that is not listed then neither hears our announcements nor is contacted by us. It is hardening, not
security: a host that knows our addresses can still send to us; only SROS2 (DDS security) authenticates and
encrypts (see the README).

Used by the launch files and by the pip-only launcher alike; writes the rendered profile once per content.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from intradp_ros.launching.scratch import write_derived

__all__ = ["restricted_profile", "profile_for", "discovery_environment"]

NS = "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _addresses(text: str) -> list[str]:
    return [a.strip() for a in text.replace(";", ",").split(",") if a.strip()]


def restricted_profile(base_xml: str, interfaces: list[str]) -> str:
    """``base_xml`` (a Fast DDS profile with a UDPv4 transport descriptor) with its UDP transports limited to
    ``interfaces`` and loopback (this host's other nodes)."""
    ET.register_namespace("", NS)
    root = ET.fromstring(base_xml)
    udps = [d for d in root.iter(_q("transport_descriptor")) if (d.findtext(_q("type")) or "").startswith("UDPv4")]
    if not udps:
        raise ValueError("the base profile has no UDPv4 transport descriptor to restrict")
    for d in udps:
        white = d.find(_q("interfaceWhiteList"))
        if white is None:
            white = ET.SubElement(d, _q("interfaceWhiteList"))
        for a in dict.fromkeys([*interfaces, "127.0.0.1"]):
            ET.SubElement(white, _q("address")).text = a
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def profile_for(base: str, interfaces: str) -> str:
    """The profile file to export: ``base`` itself unless ``interfaces`` (a comma list) is set, else the restricted
    copy (written under $ROS_HOME/intradp, or the temp directory)."""
    ifs = _addresses(interfaces)
    if not ifs:
        return base
    if not base:
        raise ValueError("dds_interfaces needs a base dds_profile (config/fastdds.xml)")
    return write_derived(restricted_profile(Path(base).read_text(), ifs), "fastdds", ".xml")


def discovery_environment(peers: str, server: str = "") -> dict[str, str]:
    """ROS's discovery variables for ``dds_peers`` and ``discovery_server`` (none without either).

    A Discovery Server (``host:port``, several comma separated) makes every participant its client
    (ROS_DISCOVERY_SERVER, read by Fast DDS): discovery is unicast to the server, for networks that drop multicast."""
    ps, servers = _addresses(peers), _addresses(server)
    out = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": ";".join(ps)} if ps else {}
    if servers:
        for s in servers:
            host, _, port = s.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"discovery_server {s!r}: expected host:port, e.g. 10.0.0.2:11811")
        out["ROS_DISCOVERY_SERVER"] = ";".join(servers)
    return out
